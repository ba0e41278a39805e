"""`lakehouse db ...`: apply migrations and show their state on the control-plane database."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg
import typer

from control_room.config import get_settings
from control_room.db.migrate import MigrationError, status
from control_room.supervisor import SupervisorError, apply_migrations, control_plane_database

app = typer.Typer(
    help="The control-plane database (LAKEHOUSE_DATABASE_URL, or the embedded Postgres under .lakehouse/).",
    no_args_is_help=True,
)
T = TypeVar("T")


def _on_database(work: Callable[[str], T]) -> T:
    """Run ``work`` with the control-plane database's URL; a migration or supervisor error exits 1 with its text."""
    try:
        with control_plane_database(get_settings()) as database:
            return work(database.url)
    except (MigrationError, SupervisorError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending migrations from supabase/migrations, in order, each in its own transaction."""
    applied = _on_database(apply_migrations)
    if not applied:
        typer.echo("up to date")
        return
    for filename in applied:
        typer.echo(f"applied {filename}")


@app.command("status")
def status_command() -> None:
    """Every migration with its state: applied, pending, edited (checksum differs), missing (not on disk)."""
    try:
        rows = _on_database(status)
    except psycopg.Error as exc:
        typer.echo(f"error: cannot read migration state: {str(exc).strip()}", err=True)
        raise typer.Exit(1) from exc
    width = max([len("filename"), *(len(row.filename) for row in rows)])
    typer.echo(f"{'filename':<{width}}  {'state':<8}  applied_at")
    for row in rows:
        applied_at = row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-"
        typer.echo(f"{row.filename:<{width}}  {row.state:<8}  {applied_at}")
    if any(row.state in ("edited", "missing") for row in rows):
        raise typer.Exit(1)
