"""`lakehouse contract export|check`: the OpenAPI contract file versus the served API."""

from __future__ import annotations

import subprocess
import sys

import typer

from control_room.api.contract import CONTRACT_PATH, contract_diff, export_contract, load_contract, served_contract

app = typer.Typer(help="The wire contract (contracts/lakehouse-executor.openapi.yaml).", no_args_is_help=True)


@app.command("export")
def export_command() -> None:
    """Write the served API's OpenAPI document to the contract file."""
    path = export_contract()
    typer.echo(f"wrote {path}")


@app.command("check")
def check_command() -> None:
    """Fail when the contract file and the served API differ (paths, methods, parameters, schemas)."""
    diff = contract_diff(load_contract(), served_contract())
    if diff:
        for line in diff:
            typer.echo(line, err=True)
        typer.echo(f"{CONTRACT_PATH.name} is out of date: run `lakehouse contract export`", err=True)
        raise typer.Exit(1)
    typer.echo(f"{CONTRACT_PATH.name} matches the served API")


@app.command("generate")
def generate_command() -> None:
    """Export the contract from the served API, then regenerate the agent's models from it (`make contract`)."""
    typer.echo(f"wrote {export_contract()}")
    # A separate process: the control room never imports the agent (nor the agent the control room).
    raise typer.Exit(subprocess.run([sys.executable, "-m", "executor_agent.generated.build"], check=False).returncode)
