"""``python -m executor_agent``: the same as the ``lakehouse-executor`` command."""

from executor_agent.cli import main

raise SystemExit(main())
