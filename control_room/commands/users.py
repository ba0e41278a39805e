"""`lakehouse users ...`: local accounts (first admin, more people) and their project roles."""

from __future__ import annotations

import sys

import psycopg
import typer

from control_room.commands.on_database import on_database
from control_room.services import users

app = typer.Typer(
    help="People who sign in to the control room: local accounts and their roles.",
    no_args_is_help=True,
)
SignInEmail = typer.Option(..., "--email", help="Email the person signs in with.")
PasswordStdin = typer.Option(
    False, "--password-stdin", help="Read the password from standard input instead of generating one."
)
DisplayName = typer.Option("", "--name", help="Display name.")


def _password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    return sys.stdin.readline().rstrip("\n")


@app.command("create-admin")
def create_admin_command(
    email: str = SignInEmail,
    password_stdin: bool = PasswordStdin,
    name: str = DisplayName,
) -> None:
    """Create (or reset) a local admin of every org; prints the password once when it was generated."""
    password = _password(password_stdin)
    account = on_database(lambda conn: users.create_admin(conn, email=email, password=password, display_name=name))
    orgs = ", ".join(account.orgs) or "none yet (run `lakehouse run` to load the demo org)"
    typer.echo(f"admin {account.email} (admin of: {orgs})")
    if password is None:
        typer.echo(f"password: {account.password}  (shown once; run create-admin again to reset it)")


@app.command("create")
def create_command(
    email: str = SignInEmail,
    project: str = typer.Option(..., "--project", help="Project id or slug to grant the role on."),
    role: str = typer.Option("viewer", "--role", help="viewer, operator or admin."),
    password_stdin: bool = PasswordStdin,
    name: str = DisplayName,
) -> None:
    """Create a local account with a role on one project; prints the password once when generated."""
    given = _password(password_stdin)
    password = given if given is not None else users.generate_password()

    async def create(conn: psycopg.AsyncConnection) -> None:
        async with conn.transaction():
            await users.create_local_user(conn, email=email, password=password, display_name=name)
            await users.grant_role(conn, email=email, project=project, role=role)

    on_database(create)
    typer.echo(f"user {email.strip().lower()}: {role} on {project}")
    if given is None:
        typer.echo(f"password: {password}  (shown once)")


@app.command("grant")
def grant_command(
    email: str = typer.Option(..., "--email", help="An existing user (with Supabase Auth: signed in once)."),
    project: str = typer.Option(..., "--project", help="Project id or slug."),
    role: str = typer.Option(..., "--role", help="viewer, operator or admin."),
) -> None:
    """Give an existing user a role on a project (replacing their earlier role there)."""
    on_database(lambda conn: users.grant_role(conn, email=email, project=project, role=role))
    typer.echo(f"user {email.strip().lower()}: {role} on {project}")
