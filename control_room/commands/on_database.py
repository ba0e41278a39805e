"""Run one piece of CLI work on the control-plane database, turning refusals into a message and exit code 1."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import typer

from control_room.config import get_settings
from control_room.db.connection import connect_async
from control_room.services import auth
from control_room.services.errors import ServiceError, from_db_error
from control_room.supervisor import SupervisorError, control_plane_database

T = TypeVar("T")


def on_database(work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` on the control-plane database (the embedded one is started if needed)."""

    async def run(url: str) -> T:
        async with await connect_async(url) as conn:
            return await work(conn)

    try:
        with control_plane_database(get_settings()) as database:
            return asyncio.run(run(database.url))
    except ServiceError as exc:
        field = f" ({exc.field})" if exc.field else ""
        typer.echo(f"error{field}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except SupervisorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except psycopg.Error as exc:
        mapped = from_db_error(exc)
        if mapped is None:
            typer.echo(f"error: the database refused it: {str(exc).strip()}", err=True)
        else:
            field = f" ({mapped.field})" if mapped.field else ""
            typer.echo(f"error{field}: {mapped.message}", err=True)
        raise typer.Exit(1) from exc


def cli_actor() -> str:
    """Who the CLI's changes are recorded as (audit log, ``by`` columns): ``cli:<login name>``."""
    return f"cli:{getpass.getuser()}"


async def act_as_cli(conn: psycopg.AsyncConnection) -> None:
    """Record the changes of the caller's open transaction as the CLI's (``auth.act_as``, transaction-local)."""
    await auth.act_as(conn, cli_actor(), local=True)
