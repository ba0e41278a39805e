"""`lakehouse caps report` and `lakehouse capabilities report`: caps versus usage, and coverage versus Databricks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from control_room.bundle.source import InvalidInput
from control_room.commands.bundle import control_plane_connection
from control_room.commands.governance import add_caps_commands
from control_room.commands.validate import JsonOut, print_or_write
from control_room.reports.capabilities import CAPABILITIES_PATH, evidence_problems, load_matrix, render_matrix
from control_room.reports.caps import caps_usage, render_csv, render_markdown
from control_room.validators.results import CheckResult

caps_app = typer.Typer(help="Caps (ops.caps) and their usage (ops.cap_usage).", no_args_is_help=True)
add_caps_commands(caps_app)  # caps list | set | delete (issue 19)
capabilities_app = typer.Typer(
    help="The capability matrix versus Databricks (spec/capabilities.yaml).", no_args_is_help=True
)


def _day(value: str | None, option: str, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        typer.echo(f"error: {option} {value!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from exc


@caps_app.command("report")
def caps_report_command(
    org: str = typer.Option("demo", "--org", help="Org slug."),
    start: str | None = typer.Option(None, "--from", help="First day, YYYY-MM-DD (default: 30 days ago)."),
    end: str | None = typer.Option(None, "--to", help="Last day, YYYY-MM-DD (default: today, UTC)."),
    output_format: str = typer.Option("markdown", "--format", help="markdown or csv."),
    out: Annotated[Path | None, typer.Option("--out", help="Write the report here instead of printing it.")] = None,
) -> None:
    """Each cap against its usage over a period: runs, compute-seconds, peak concurrency, runtime, scans, breaches."""
    if output_format not in ("markdown", "csv"):
        typer.echo(f"error: --format must be markdown or csv, not {output_format!r}", err=True)
        raise typer.Exit(2)
    # Usage days are UTC days (ops.utc_today()).
    last = _day(end, "--to", datetime.now(UTC).date())
    first = _day(start, "--from", last - timedelta(days=29))
    with control_plane_connection() as conn:
        try:
            rows = caps_usage(conn, org=org, start=first, end=last)
        except (LookupError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    print_or_write(
        render_csv(rows) if output_format == "csv" else render_markdown(rows, org=org, start=first, end=last), out
    )


@capabilities_app.command("report")
def capabilities_report_command(
    path: Annotated[Path, typer.Option("--file", help="The capability matrix YAML.")] = CAPABILITIES_PATH,
    link_base: str = typer.Option(
        "", "--link-base", help="Prefix of evidence links, e.g. a repository URL + /blob/main/."
    ),
    check: bool = typer.Option(False, "--check", help="Fail when any evidence does not exist in the repository."),
    out: Annotated[Path | None, typer.Option("--out", help="Write the Markdown here instead of printing it.")] = None,
    json_out: Path | None = JsonOut,
) -> None:
    """The coverage matrix as Markdown, each row linked to its evidence (test ids)."""
    try:
        matrix, document = load_matrix(path)
        problems = evidence_problems(matrix, document) if check else []
    except InvalidInput as exc:
        problems = list(exc.problems)
        matrix = None
    if json_out is not None and (check or problems):
        rows = len(matrix.capabilities) if matrix else 0
        CheckResult(
            name="capabilities",
            status="failed" if problems else "passed",
            summary=f"{path.name}: {len(problems)} problem(s)"
            if problems
            else f"{path.name}: {rows} rows, evidence found",
            details=[str(p) for p in problems],
        ).write(json_out)
    if problems:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1)
    assert matrix is not None
    print_or_write(render_matrix(matrix, link_base=link_base), out)
