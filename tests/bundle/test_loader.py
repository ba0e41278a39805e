"""Bundle validation offline: the published schema, located errors for typos, cross-file checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from control_room.bundle import BUNDLE_SCHEMA_PATH, DEMO_BUNDLE_DIR
from control_room.bundle.loader import bundle_files, load_bundle
from control_room.bundle.source import InvalidInput
from tests.bundle.conftest import CliResult, copy_bundle, edit, line_of


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_bundle(path)
    return [str(p) for p in caught.value.problems]


def test_examples_bundle_validates_against_the_published_schema() -> None:
    schema = json.loads(BUNDLE_SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    files = bundle_files(DEMO_BUNDLE_DIR)
    assert len(files) >= 7
    for path in files:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        assert list(validator.iter_errors(data)) == [], path

    loaded = load_bundle(DEMO_BUNDLE_DIR)
    bundle = loaded.bundle
    assert bundle.org == "demo"
    assert {r.name for r in bundle.routing_rules} >= {"prod-spark", "dbt-models", "sql-warehouse", "catch-all"}
    assert {c.name for c in bundle.caps} >= {"org-runs-per-day", "lakehouse-concurrency", "sql-scan-limit"}
    assert bundle.job_templates and bundle.schedules and bundle.alert_rules and bundle.promotion_gates


def test_the_published_schema_catches_what_the_loader_catches(tmp_path: Path) -> None:
    schema = json.loads(BUNDLE_SCHEMA_PATH.read_text(encoding="utf-8"))
    bad = {"caps": [{"name": "x", "scope": "org", "kind": "runs_per_day", "limt": 5}]}
    messages = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(bad)]
    assert any("'limit' is a required property" in m for m in messages)
    assert any("'limt' was unexpected" in m for m in messages)


def test_a_typo_names_file_line_and_field(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    caps = bundle / "caps.yaml"
    edit(caps, "    limit: 16\n", "    limt: 16\n")

    problems = problems_of(bundle)

    typo_line = line_of(caps, "limt: 16")
    assert f'{caps}:{typo_line}: caps[1].limt: unknown field; did you mean "limit"?' in problems
    assert any(p.startswith(f"{caps}:") and "caps[1].limit: required field is missing" in p for p in problems)


def test_a_wrong_value_names_the_allowed_ones(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    caps = bundle / "caps.yaml"
    edit(caps, "    kind: concurrent_tasks\n", "    kind: concurent_tasks\n")

    [problem] = problems_of(bundle)

    assert problem.startswith(f"{caps}:{line_of(caps, 'concurent_tasks')}: caps[1].kind: ")
    assert "'concurrent_tasks'" in problem and "got 'concurent_tasks'" in problem


def test_cross_file_references_cron_timezone_params_and_dag(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    schedules = bundle / "schedules.yaml"
    template = bundle / "job_templates" / "lakehouse" / "nightly-ingest.yaml"
    edit(schedules, "    template: dbt-build\n", "    template: dbt-biuld\n")
    edit(schedules, '    cron: "0 7 * * 1"\n', '    cron: "0 7 * *"\n')
    edit(schedules, "    timezone: America/New_York\n", "    timezone: America/NewYork\n")
    edit(schedules, "      source: orders\n", "      source: order\n")
    edit(template, "        depends_on: [land]\n", "        depends_on: [publish]\n")

    problems = problems_of(bundle)

    assert problems == sorted(
        [
            f"{template}:{line_of(template, '    tasks:')}: job_templates[0].tasks: dependency cycle: "
            "summarize -> publish -> summarize",
            f"{schedules}:{line_of(schedules, 'source: order')}: schedules[0].params.source: does not match job "
            "template \"nightly-ingest\" params_schema: 'order' is not one of ['orders', 'customers', 'events']",
            f'{schedules}:{line_of(schedules, "dbt-biuld")}: schedules[1].template: unknown job template "dbt-biuld" '
            'in project "lakehouse" (templates of the bundle there: dbt-build, nightly-ingest, warehouse-report)',
            f'{schedules}:{line_of(schedules, "0 7 * *")}: schedules[2].cron: must have five fields "minute hour '
            'day-of-month month day-of-week" (or be a macro such as "@daily")',
            f'{schedules}:{line_of(schedules, "America/NewYork")}: schedules[2].timezone: "America/NewYork" is not an '
            'IANA time zone name such as "UTC" or "Europe/Paris"',
        ]
    )


def test_duplicates_and_scope_rules_name_both_places(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    (bundle / "more.yaml").write_text(
        "routing_rules:\n"
        "  - name: prod-spark\n"
        "    position: 20\n"
        "    pool: other\n"
        "caps:\n"
        "  - name: pool-slots\n"
        "    scope: pool\n"
        "    project: lakehouse\n"
        "    kind: concurrent_tasks\n"
        "    limit: 4\n",
        encoding="utf-8",
    )
    routing = bundle / "routing.yaml"

    problems = problems_of(bundle)

    more = bundle / "more.yaml"
    # Files are read in path order, so more.yaml's rule is the first definition.
    assert problems == [
        f'{more}:6: caps[0].pool: required when scope is "pool"',
        f'{more}:8: caps[0].project: not allowed when scope is "pool"',
        f'{routing}:{line_of(routing, "name: prod-spark")}: routing_rules[0].name: duplicate: "prod-spark" is '
        f"also defined at {more}:2",
        f"{routing}:{line_of(routing, 'position: 20')}: routing_rules[1].position: duplicate position 20: also used "
        f"at {more}:2",
    ]


def test_yaml_syntax_errors_and_duplicate_keys_name_their_line(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    (bundle / "broken.yaml").write_text("caps:\n  - name: a\n    name: b\n", encoding="utf-8")
    (bundle / "unclosed.yaml").write_text("alert_rules: [\n", encoding="utf-8")

    problems = problems_of(bundle)

    assert problems[0].startswith(f"{bundle / 'broken.yaml'}:3: (document): invalid YAML:")
    assert 'duplicate key "name"' in problems[0]
    assert problems[1].startswith(f"{bundle / 'unclosed.yaml'}:2: (document): invalid YAML:")


def test_the_org_is_named_once_in_bundle_yaml(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    (bundle / "caps.yaml").write_text("org: other\ncaps: []\n", encoding="utf-8")
    assert problems_of(bundle) == [
        f"{bundle / 'caps.yaml'}:1: org: org belongs in bundle.yaml at the top of the bundle"
    ]

    (bundle / "caps.yaml").write_text("caps: []\n", encoding="utf-8")
    (bundle / "bundle.yaml").write_text("# no org\n", encoding="utf-8")
    assert problems_of(bundle) == [
        f"{bundle / 'bundle.yaml'}:1: org: required: bundle.yaml must name the org (org: <slug>)"
    ]


def test_cli_validate_prints_located_problems_and_writes_a_check_result(
    tmp_path: Path, lakehouse: Callable[..., CliResult]
) -> None:
    good = lakehouse("bundle", "validate", str(DEMO_BUNDLE_DIR), "--json-out", str(tmp_path / "ok.json"))
    assert good.exit_code == 0, good.stderr
    assert "valid bundle for org demo" in good.stdout
    assert json.loads((tmp_path / "ok.json").read_text())["status"] == "passed"

    bundle = copy_bundle(tmp_path / "b", "demo")
    edit(
        bundle / "alerts.yaml",
        "    severity: critical\n    notify:\n      - slack:#data-incidents\n",
        "    severity: critcal\n    notify:\n      - slack:#data-incidents\n",
    )
    bad = lakehouse("bundle", "validate", str(bundle), "--json-out", str(tmp_path / "bad.json"))
    assert bad.exit_code == 1
    line = line_of(bundle / "alerts.yaml", "critcal")
    assert f"{bundle / 'alerts.yaml'}:{line}: alert_rules[0].severity:" in bad.stderr
    result = json.loads((tmp_path / "bad.json").read_text())
    assert result["status"] == "failed"
    assert result["details"][0].startswith(f"{bundle / 'alerts.yaml'}:{line}: alert_rules[0].severity:")


def test_job_template_tasks_are_checked_by_their_engines_models(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b", "demo")
    dbt = bundle / "job_templates" / "lakehouse" / "dbt-build.yaml"
    edit(
        dbt, "          command: build\n", "          command: build\n          threads: many\n          colour: red\n"
    )
    report = bundle / "job_templates" / "lakehouse" / "warehouse-report.yaml"
    edit(report, "        engine: duckdb\n", "        engine: cobol\n")

    problems = problems_of(bundle)

    assert any(
        f"{dbt}:" in p and "job_templates[0].tasks[0].config.threads: Input should be a valid integer" in p
        for p in problems
    ), problems
    assert any("tasks[0].config.colour: Extra inputs are not permitted" in p for p in problems), problems
    assert any(f"{report}:" in p and "tasks[0].engine: unknown engine 'cobol'" in p for p in problems), problems
