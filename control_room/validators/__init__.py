"""PR-gate validators: the contract's breaking changes, migrations (naming, forward-only, lint, apply) and workflows."""
