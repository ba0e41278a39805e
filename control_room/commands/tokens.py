"""`lakehouse tokens create|list|revoke`: a person's API tokens (`lhu_…`), shown once and stored hashed."""

from __future__ import annotations

import psycopg
import typer

from control_room.commands.on_database import on_database
from control_room.services import auth, users

app = typer.Typer(help="A person's API tokens for calling the HTTP API (lhu_…).", no_args_is_help=True)

EMAIL = typer.Option(..., "--email", help="Whose tokens: the person's sign-in email.")


@app.command("create")
def create_command(
    email: str = EMAIL,
    name: str = typer.Option(..., "--name", help="Unique among the person's tokens, e.g. ci-nightly."),
    expires_in_days: float | None = typer.Option(
        90.0, "--expires-in-days", help="Lifetime in days; 0 for a token that never expires."
    ),
    role_ceiling: str | None = typer.Option(
        None, "--role-ceiling", help="viewer, operator or admin: requests act with at most this role."
    ),
) -> None:
    """Create an API token and print it ONCE (only its SHA-256 is stored)."""

    async def create(conn: psycopg.AsyncConnection) -> str:
        user = await users.find_user(conn, email=email)
        return await auth.create_api_token(
            conn,
            user_id=user.user_id,
            name=name,
            expires_in_days=expires_in_days or None,
            role_ceiling=role_ceiling,
        )

    token = on_database(create)
    ceiling = f", at most {role_ceiling}" if role_ceiling else ""
    lifetime = f"expires in {expires_in_days:g} days" if expires_in_days else "never expires"
    typer.echo(f"token {name} of {email.strip().lower()} ({lifetime}{ceiling}); shown once:", err=True)
    typer.echo(token)


@app.command("list")
def list_command(email: str = EMAIL) -> None:
    """The person's tokens: name, prefix, ceiling, expiry, last use (never the tokens)."""

    async def listing(conn: psycopg.AsyncConnection) -> list[auth.ApiTokenPublic]:
        user = await users.find_user(conn, email=email)
        return await auth.list_api_tokens(conn, user_id=user.user_id)

    tokens = on_database(listing)
    if not tokens:
        typer.echo(f"{email.strip().lower()} has no API tokens (create one with `lakehouse tokens create`)")
    for t in tokens:
        state = "revoked" if t.revoked_at else "active"
        expires = t.expires_at.isoformat(timespec="minutes") if t.expires_at else "never"
        used = t.last_used_at.isoformat(timespec="minutes") if t.last_used_at else "never"
        ceiling = t.role_ceiling or "-"
        typer.echo(f"{t.name}\t{t.token_prefix}…\t{state}\tceiling={ceiling}\texpires={expires}\tlast used={used}")


@app.command("revoke")
def revoke_command(email: str = EMAIL, name: str = typer.Option(..., "--name", help="The token to revoke.")) -> None:
    """Revoke a token: its next request gets 401."""

    async def revoke(conn: psycopg.AsyncConnection) -> None:
        user = await users.find_user(conn, email=email)
        await auth.revoke_api_token(conn, user_id=user.user_id, name=name)

    on_database(revoke)
    typer.echo(f"revoked token {name} of {email.strip().lower()}")
