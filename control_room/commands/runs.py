"""`lakehouse runs rerun`: re-run a finished run, all of it, only what failed, or from one task on;
`lakehouse runs logs`: a task's whole log (or one attempt's) as text."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
import typer

from control_room.commands.jobs import _actor
from control_room.commands.on_database import on_database
from control_room.services import runs, task_detail

app = typer.Typer(
    help="Runs: re-run a finished run (all tasks, failed ones, or from a task); print a task's log.",
    no_args_is_help=True,
)


def _run_id(run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(run_id)
    except ValueError:
        typer.echo(
            f'error (run_id): "{run_id}" is not a run id; copy it from `lakehouse` output or the run page', err=True
        )
        raise typer.Exit(2) from None


@app.command("rerun")
def rerun_command(
    run_id: Annotated[str, typer.Argument(help="The run to re-run (its full id).")],
    failed: Annotated[
        bool, typer.Option("--failed", help="Run only the failed, cancelled and downstream tasks; reuse the rest.")
    ] = False,
    from_task: Annotated[
        str | None, typer.Option("--from-task", help="Run this task and its downstream tasks; reuse the rest.")
    ] = None,
) -> None:
    """Create a re-run linked to the run (retry_of); prints the new run's id. Without options every task runs."""
    if failed and from_task:
        typer.echo("error (--from-task): choose --failed or --from-task, not both", err=True)
        raise typer.Exit(2)
    source = _run_id(run_id)
    mode = "failed" if failed else "from_task" if from_task else "all"

    async def rerun(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with conn.transaction():  # the new run and its reused outcomes appear together
            return await runs.retry_run(
                conn,
                run_id=source,
                requested_by=None,
                requested_by_name=_actor(),
                mode=mode,
                from_task=from_task,
            )

    created = on_database(rerun)
    typer.echo(f"run {created['id']} re-runs {source} ({mode.replace('_', ' ')}): {created['status']}")


@app.command("logs")
def logs_command(
    run_id: Annotated[str, typer.Argument(help="The run (its full id).")],
    task: Annotated[str, typer.Argument(help="The task's key (or id).")],
    attempt: Annotated[int | None, typer.Option("--attempt", min=1, help="Only this attempt (all by default).")] = None,
) -> None:
    """Print the task's events as log lines, oldest first (UTC time, level, type, message, data)."""
    source = _run_id(run_id)

    async def lines(conn: psycopg.AsyncConnection) -> int:
        task_id, _key = await task_detail.resolve_task(conn, run_id=source, task=task)
        count = 0
        async for line in task_detail.attempt_log(conn, run_id=source, task_id=task_id, attempt=attempt):
            typer.echo(line, nl=False)
            count += 1
        return count

    if on_database(lines) == 0:
        typer.echo(f"no events for task {task!r}" + (f" attempt {attempt}" if attempt else ""), err=True)
