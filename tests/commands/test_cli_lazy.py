"""`lakehouse` imports a command group only when it runs: a database command does not pay for every
other group's imports (jsonschema's format checkers, the API, boto3, Reflex), and `--help` still
lists every group with the help its own Typer app gives."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from control_room.cli import LAZY_GROUPS, app, load_group
from control_room.config import PROJECT_ROOT

HEAVY = ("jsonschema", "boto3", "reflex", "control_room.api", "control_room.commands.jobs", "control_room.supervisor")


def test_help_lists_every_group_with_its_own_help() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, (_module, _attribute, help_text) in LAZY_GROUPS.items():
        assert name in result.output
        assert load_group(name).help == help_text, f"LAZY_GROUPS[{name!r}] no longer matches the group's help"
    assert "run" in result.output


def test_a_group_runs_without_importing_the_others() -> None:
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from control_room.cli import app\n"
        "result = CliRunner().invoke(app, ['tokens', 'list', '--help'])\n"
        "assert result.exit_code == 0 and '--email' in result.output, result.output\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    # `tokens` needs the supervisor (to find the database); nothing else heavy comes with it.
    assert done.stdout.strip() == "['control_room.supervisor']", done.stdout


def test_an_unknown_group_is_refused_with_the_list_of_groups() -> None:
    result = CliRunner().invoke(app, ["tokenz"])
    assert result.exit_code != 0
    assert "No such command 'tokenz'" in result.output
