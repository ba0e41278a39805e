"""`lakehouse ml ...`: the project's MLflow experiments and registered models, and model aliases."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import typer

from control_room.commands.on_database import act_as_cli, on_database
from control_room.commands.project_option import ProjectOption, project_id_of
from control_room.config import get_settings
from control_room.services import ml_tracking

app = typer.Typer(help="MLflow: experiments, registered models and their aliases.", no_args_is_help=True)
alias_app = typer.Typer(help="Point a model alias (champion, challenger, ...) at a version, or remove it.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(alias_app, name="alias")

def _use_tracking_server() -> None:
    """MLFLOW_TRACKING_URI, else the server `lakehouse run` starts (LAKEHOUSE_MLFLOW_HOST/PORT)."""
    settings = get_settings()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"http://{settings.mlflow_host}:{settings.mlflow_port}")


@app.command("experiments")
def experiments_command(project: ProjectOption, search: str | None = typer.Option(None, "--search")) -> None:
    """List the project's experiments with their run counts and last run."""
    _use_tracking_server()

    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        rows, _next = await ml_tracking.list_experiments(
            conn, project=await project_id_of(conn, project), text=search, limit=ml_tracking.MAX_PAGE
        )
        return rows

    for row in on_database(work):
        last = f"{row['last_run_at']:%Y-%m-%d %H:%M} {row['last_run_status']}" if row["last_run_at"] else "no run"
        typer.echo(f"{row['id']:>6}  {row['name']:40} {row['runs']:>5} runs  last: {last}")


@app.command("models")
def models_command(project: ProjectOption) -> None:
    """List the project's registered models with their latest version and aliases."""
    _use_tracking_server()

    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        rows, _next = await ml_tracking.list_models(conn, project=await project_id_of(conn, project),
                                                    limit=ml_tracking.MAX_PAGE)  # fmt: skip
        return rows

    for row in on_database(work):
        aliases = ", ".join(f"@{a}=v{v}" for a, v in sorted(row["aliases"].items())) or "no alias"
        typer.echo(f"{row['name']:40} latest v{row['latest_version'] or '-':<4} {aliases}")


def _change_alias(project: str, model: str, alias: str, version: str | None, gate_metric: str | None) -> None:
    _use_tracking_server()

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        project_id = await project_id_of(conn, project)
        async with conn.transaction():  # the audit row is kept only when MLflow made the change
            await act_as_cli(conn)
            return await ml_tracking.set_model_alias(
                conn, project=project_id, name=model, alias=alias, version=version, gate_metric=gate_metric
            )

    change = on_database(work)
    was = f" (was v{change['previous_version']})" if change["previous_version"] else ""
    now = f"v{change['version']}" if change["version"] else "removed"
    typer.echo(f"{model} @{alias}: {now}{was}")


@alias_app.command("set")
def alias_set_command(
    model: str, alias: str, version: str, project: ProjectOption,
    gate_metric: str | None = typer.Option(None, "--gate-metric", help="Refuse unless the version's run logged this "
                                           "metric at least as high as the alias's current version."),
) -> None:  # fmt: skip
    """Point ALIAS of MODEL at VERSION (audited)."""
    _change_alias(project, model, alias, version, gate_metric)


@alias_app.command("delete")
def alias_delete_command(model: str, alias: str, project: ProjectOption) -> None:
    """Remove ALIAS from MODEL (audited)."""
    _change_alias(project, model, alias, None, None)
