"""`lakehouse executors token create|revoke`: per-executor bearer tokens scoped to a pool."""

from __future__ import annotations

import asyncio

import psycopg
import typer

from control_room.config import get_settings
from control_room.db.connection import connect_async
from control_room.services.auth import create_executor_token, resolve_org, revoke_executor_token
from control_room.services.errors import ServiceError
from control_room.supervisor import SupervisorError, control_plane_database

app = typer.Typer(help="Executor agents and their tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Create or revoke an executor's bearer token.", no_args_is_help=True)
app.add_typer(token_app, name="token")

POOL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


async def _with_connection(url: str, action: str, name: str, pool: str | None, org: str | None) -> str | None:
    async with await connect_async(url) as conn:
        if action == "create":
            assert pool is not None
            org_id = await resolve_org(conn, org)
            return await create_executor_token(conn, name=name, pool=pool, org_id=org_id)
        await revoke_executor_token(conn, name=name)
        return None


def _run(action: str, name: str, pool: str | None = None, org: str | None = None) -> str | None:
    try:
        with control_plane_database(get_settings()) as database:
            return asyncio.run(_with_connection(database.url, action, name, pool, org))
    except ServiceError as exc:
        field = f" ({exc.field})" if exc.field else ""
        typer.echo(f"error{field}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except (SupervisorError, psycopg.Error) as exc:
        typer.echo(f"error: {str(exc).strip()}", err=True)
        raise typer.Exit(1) from exc


@token_app.command("create")
def create_command(
    name: str = typer.Option(..., "--name", help="Unique executor name, e.g. k8s-spark-01."),
    pool: str = typer.Option("default", "--pool", help="Pool whose tasks the token may claim."),
    org: str | None = typer.Option(
        None, "--org", help="Org (slug or id) that owns the executor; its tasks only. Needed when several exist."
    ),
) -> None:
    """Create an executor of an org in a pool and print its token ONCE (only its hash is stored)."""
    import re

    if not re.match(POOL_PATTERN, pool):
        typer.echo("error (pool): use lower-case letters, digits, '_' or '-' (max 63)", err=True)
        raise typer.Exit(2)
    token = _run("create", name, pool, org)
    typer.echo(f"executor {name} in pool {pool}: token (shown once, store it in a secret):", err=True)
    typer.echo(token)


@token_app.command("revoke")
def revoke_command(name: str = typer.Option(..., "--name", help="The executor whose token to revoke.")) -> None:
    """Revoke an executor's token: its next request gets 401 and its leases expire and are reaped."""
    _run("revoke", name)
    typer.echo(f"revoked the token of executor {name}")
