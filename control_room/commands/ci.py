"""`lakehouse ci summary`: the PR comment's Markdown table, from the check results the PR-gate jobs wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control_room.reports.ci_summary import (
    SummaryInputError,
    has_failures,
    parse_jobs,
    render_markdown,
    results_as_json,
    summary_rows,
)

app = typer.Typer(help="Continuous integration helpers for the PR gate.", no_args_is_help=True)


@app.command("summary")
def summary_command(
    results: Annotated[
        Path,
        typer.Argument(
            help="Folder of check results (*.json from --json-out, *.xml JUnit reports).", show_default=False
        ),
    ],
    job: Annotated[
        list[str] | None, typer.Option("--job", help="NAME=RESULT of a job (GitHub's needs.<job>.result); repeatable.")
    ] = None,
    run_url: str | None = typer.Option(None, "--run-url", help="Link to the workflow run, shown under the table."),
    output_format: str = typer.Option("markdown", "--format", help="markdown or json."),
    out: Annotated[Path | None, typer.Option("--out", help="Write the summary here instead of printing it.")] = None,
    check: bool = typer.Option(False, "--check", help="Exit 1 when any check failed (or none was found)."),
) -> None:
    """A Markdown table of every check with its status and details (the PR comment the workflow posts)."""
    if output_format not in ("markdown", "json"):
        typer.echo(f"error: --format must be markdown or json, not {output_format!r}", err=True)
        raise typer.Exit(2)
    try:
        rows = summary_rows(results, parse_jobs(job or []))
    except SummaryInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = results_as_json(rows) + "\n" if output_format == "json" else render_markdown(rows, run_url=run_url)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    if check and has_failures(rows):
        failed = [r.name for r in rows if r.status == "failed"] or ["no check results found"]
        typer.echo(f"failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
