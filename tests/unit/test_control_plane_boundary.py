"""The control plane never imports the agent: control_room reaches executors only through the contract."""

from __future__ import annotations

from pathlib import Path

import control_room
from tests.agent.test_boundary import imported_names

PACKAGE = Path(control_room.__file__).resolve().parent
FORBIDDEN = "executor_agent"


def agent_imports(path: Path) -> list[str]:
    """The names ``path`` imports from the agent's package (directly or through importlib)."""
    return sorted(name for name in imported_names(path) if name.split(".")[0] == FORBIDDEN)


def test_no_module_of_the_control_room_imports_the_agent() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 50
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}" for path in files for name in agent_imports(path)]
    assert offenders == []


def test_the_check_finds_a_planted_agent_import(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import json\n"
        "def rows():\n"
        "    from executor_agent.engines.sql_support.jsonable import rows_as_json\n"
        "    import importlib\n"
        "    return importlib.import_module('executor_agent.wire'), rows_as_json\n",
        encoding="utf-8",
    )
    assert agent_imports(planted) == ["executor_agent.engines.sql_support.jsonable", "executor_agent.wire"]
