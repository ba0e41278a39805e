"""The `lakehouse` command: assembles the command groups (db, later executors, users, bundle, validate)."""

from __future__ import annotations

import typer

from control_room import supervisor
from control_room.commands import alerts as alerts_commands
from control_room.commands import backlog as backlog_commands
from control_room.commands import bundle as bundle_commands
from control_room.commands import ci as ci_commands
from control_room.commands import contract, db, executors
from control_room.commands import jobs as jobs_commands
from control_room.commands import reports as report_commands
from control_room.commands import tokens as tokens_commands
from control_room.commands import users as users_commands
from control_room.commands import validate as validate_commands

app = typer.Typer(
    name="lakehouse",
    help="Lakehouse Control Room: control plane, web UI and contract API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Command groups: one Typer app per module in control_room/commands/, mounted here.
app.add_typer(db.app, name="db")
app.add_typer(executors.app, name="executors")
app.add_typer(contract.app, name="contract")
app.add_typer(users_commands.app, name="users")
app.add_typer(bundle_commands.app, name="bundle")
app.add_typer(validate_commands.app, name="validate")
app.add_typer(backlog_commands.app, name="backlog")
app.add_typer(report_commands.caps_app, name="caps")
app.add_typer(report_commands.capabilities_app, name="capabilities")
app.add_typer(ci_commands.app, name="ci")
app.add_typer(jobs_commands.app, name="jobs")
app.add_typer(tokens_commands.app, name="tokens")
app.add_typer(alerts_commands.app, name="alerts")


@app.command("run")
def run_command() -> None:
    """Start Postgres (embedded unless LAKEHOUSE_DATABASE_URL is set), migrate, serve UI + API on one port."""
    raise typer.Exit(supervisor.run())


def main() -> None:
    """Console-script entry point (``lakehouse``)."""
    app()
