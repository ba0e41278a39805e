"""`lakehouse backlog validate|report`: the canonical backlog spec/backlog.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control_room.bundle.source import InvalidInput
from control_room.commands.validate import JsonOut, finish, print_or_write
from control_room.reports.backlog import BACKLOG_PATH, Backlog, load_backlog, render_report
from control_room.validators.results import CheckResult

app = typer.Typer(help="The canonical backlog (spec/backlog.yaml): epics -> items.", no_args_is_help=True)

BacklogFile = typer.Option(BACKLOG_PATH, "--file", help="The backlog YAML.")


def _load(path: Path) -> Backlog:
    try:
        return load_backlog(path)
    except InvalidInput as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from exc


@app.command("validate")
def validate_command(path: Path = BacklogFile, json_out: Path | None = JsonOut) -> None:
    """Check the backlog against its schema (spec/backlog.schema.json) and for duplicate ids."""
    try:
        backlog = load_backlog(path)
    except InvalidInput as exc:
        result = CheckResult(
            name="backlog",
            status="failed",
            summary=f"{path.name}: {len(exc.problems)} problem(s)",
            details=[str(p) for p in exc.problems],
        )
    else:
        items = sum(len(epic.items) for epic in backlog.epics)
        result = CheckResult(
            name="backlog", status="passed", summary=f"{path.name} is valid: {len(backlog.epics)} epics, {items} items"
        )
    finish(result, json_out)


@app.command("report")
def report_command(
    path: Path = BacklogFile,
    out: Annotated[Path | None, typer.Option("--out", help="Write the Markdown here instead of printing it.")] = None,
) -> None:
    """Markdown progress by epic and by lane, and the open items with their acceptance criteria."""
    print_or_write(render_report(_load(path)), out)
