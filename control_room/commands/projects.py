"""`lakehouse projects ...`: per-project settings (event retention) and a retention pass on demand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import psycopg
import typer

from control_room.commands.on_database import act_as_cli, cli_actor, on_database
from control_room.services import retention, runs

app = typer.Typer(help="Projects: event retention (days before a finished run's events move to Parquet).",
                  no_args_is_help=True)  # fmt: skip


@app.command("retention")
def retention_command(
    project: Annotated[str, typer.Argument(help="Project slug or id.")],
    days: Annotated[
        int | None, typer.Option("--days", min=0, max=3650, help="Set it: days after a run finished; 0 keeps forever.")
    ] = None,
) -> None:
    """Show the project's event retention, or set it with --days (audited)."""

    async def work(conn: psycopg.AsyncConnection) -> int:
        async with conn.transaction():
            await act_as_cli(conn)
            project_id = await runs.resolve_project(conn, project)
            if days is None:
                return await retention.get_retention(conn, project_id=project_id)
            return await retention.set_retention(conn, project_id=project_id, days=days)

    kept = on_database(work)
    kept_for = f"kept {kept} days after a run finishes" if kept else "kept forever"
    typer.echo(f"{project}: events {kept_for}")


@app.command("archive-events")
def archive_command(
    runs_per_pass: Annotated[int, typer.Option("--runs", min=1, max=10_000, help="Runs to archive at most.")] = 100,
) -> None:
    """Archive now the runs past their project's retention (what the control room's loop does every minute)."""

    async def work(conn: psycopg.AsyncConnection) -> retention.PassResult:
        return await retention.archive_due(
            conn, now=lambda: datetime.now(UTC), worker=cli_actor(), max_runs=runs_per_pass
        )

    done = on_database(work)
    typer.echo(
        f"{done.runs_done} run(s) archived: {done.events_archived} events, {done.attempts_archived} attempts "
        f"to Parquet; {done.rows_deleted} row(s) removed in {len(done.batch_seconds)} batch(es)"
    )


__all__ = ["app"]
