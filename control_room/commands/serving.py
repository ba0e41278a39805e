"""`lakehouse serving ...`: model serving endpoints: create, canary, promote, roll back, stop, delete, tokens."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import typer

from control_room.commands.on_database import act_as_cli, on_database
from control_room.commands.project_option import ProjectOption, project_id_of
from control_room.services import serving

app = typer.Typer(help="Model serving endpoints: create, canary, promote, roll back, stop; tokens.",
                  no_args_is_help=True)  # fmt: skip
token_app = typer.Typer(help="Bearer tokens of an endpoint's invocations URL (lhe_…).", no_args_is_help=True)
app.add_typer(token_app, name="token")

async def _endpoint_id(conn: psycopg.AsyncConnection, project: str, endpoint: str) -> uuid.UUID:
    return await serving.resolve_endpoint(conn, endpoint=endpoint, project_id=await project_id_of(conn, project))


def _print(endpoint: dict[str, Any]) -> None:
    split = ", ".join(f"{r['model']} v{r['version']} {r['percent']}%" for r in endpoint["routes"])
    typer.echo(
        f"{endpoint['name']:24} {endpoint['health']:9} {endpoint['replicas_healthy']}/{endpoint['replicas_total']} "
        f"replicas  rev {endpoint['revision']:<3} {split}"
    )


def _change(project: str, endpoint: str, change: str, **options: Any) -> None:
    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with conn.transaction():
            await act_as_cli(conn)
            endpoint_id = await _endpoint_id(conn, project, endpoint)
            if change == "canary":
                await serving.canary(conn, endpoint_id=endpoint_id, **options)
            elif change == "promote":
                await serving.promote(conn, endpoint_id=endpoint_id)
            elif change == "rollback":
                await serving.rollback(conn, endpoint_id=endpoint_id)
            elif change == "scale":
                await serving.scale(conn, endpoint_id=endpoint_id, **options)
            else:
                await serving.set_running(conn, endpoint_id=endpoint_id, running=change == "start")
            return await serving.get_endpoint(conn, endpoint_id=endpoint_id)

    _print(on_database(work))


@app.command("list")
def list_command(project: ProjectOption) -> None:
    """The project's endpoints: health, healthy/total replicas, revision and traffic split."""

    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        return await serving.list_endpoints(conn, project_id=await project_id_of(conn, project))

    for endpoint in on_database(work):
        _print(endpoint)


@app.command("get")
def get_command(endpoint: str, project: ProjectOption) -> None:
    """One endpoint with its replicas (address, process, task status) and revisions."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await serving.get_endpoint(conn, endpoint_id=await _endpoint_id(conn, project, endpoint))

    detail = on_database(work)
    _print(detail)
    for r in detail["replica_list"]:
        state = "healthy" if r["healthy"] else r["task_status"]
        typer.echo(
            f"  {r['model_name']} v{r['model_version']} #{r['replica_index']}  {state:9} {r['address'] or '-':22} "
            f"pid {r['pid'] or '-'}  attempt {r['attempt']}  restarts {r['restarts']}  run {r['run_id']}"
        )
    for rev in detail["revisions"]:
        split = ", ".join(f"v{r['version']} {r['percent']}%" for r in rev.routes)
        typer.echo(f"  rev {rev.revision:<3} {rev.action:8} {split:24} by {rev.created_by} {rev.created_at:%c}")


@app.command("create")
def create_command(
    name: str,
    model: str,
    version: str,
    project: ProjectOption,
    environment: str = typer.Option("dev", "--environment"),
    replicas: int = typer.Option(1, "--replicas", help="Replicas per served version."),
    pool: str | None = typer.Option(None, "--pool", help="Executor pool the replicas run in."),
    max_memory_mb: int | None = typer.Option(None, "--max-memory-mb", help="Address-space limit of each replica."),
) -> None:
    """Serve MODEL VERSION at 100 % of the traffic as endpoint NAME."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with conn.transaction():
            await act_as_cli(conn)
            endpoint_id = await serving.create_endpoint(
                conn, project_id=await project_id_of(conn, project), environment=environment, name=name, model=model,
                version=version, replicas=replicas, pool=pool, max_memory_mb=max_memory_mb,
            )  # fmt: skip
            return await serving.get_endpoint(conn, endpoint_id=endpoint_id)

    _print(on_database(work))


@app.command("canary")
def canary_command(
    endpoint: str,
    version: str,
    project: ProjectOption,
    percent: int = typer.Option(..., "--percent", min=1, max=99, help="Share of the traffic the canary gets."),
    model: str | None = typer.Option(None, "--model", help="Default: the primary version's model."),
) -> None:
    """Send PERCENT % of ENDPOINT's traffic to VERSION (the rest stays on the primary)."""
    _change(project, endpoint, "canary", version=version, percent=percent, model=model)


# The changes that take nothing but the endpoint, each a command of its name: (change, what it does).
BARE_CHANGES = (
    ("promote", "Give the canary 100 % of the traffic."),
    ("rollback", "Back to the version served before (ends a canary, or undoes a promote)."),
    ("stop", "Stop serving: the replicas' tasks are cancelled."),
    ("start", "Serve again on the current traffic split."),
)


def _bare_change_command(change: str, help_text: str) -> None:
    """Register `lakehouse serving CHANGE ENDPOINT`."""

    def command(endpoint: str, project: ProjectOption) -> None:
        _change(project, endpoint, change)

    app.command(change, help=help_text)(command)


for _change_name, _help_text in BARE_CHANGES:
    _bare_change_command(_change_name, _help_text)


@app.command("scale")
def scale_command(endpoint: str, replicas: int, project: ProjectOption) -> None:
    """REPLICAS per served version."""
    _change(project, endpoint, "scale", replicas=replicas)


@app.command("delete")
def delete_command(
    endpoint: str,
    project: ProjectOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking (needed when not at a terminal)."),
) -> None:
    """Delete ENDPOINT: its replicas stop and its tokens stop working (the audit log keeps a record)."""
    if not yes:
        typer.confirm(f"Delete serving endpoint {endpoint} (its replicas stop, its tokens stop working)?", abort=True)

    async def work(conn: psycopg.AsyncConnection) -> None:
        async with conn.transaction():
            await act_as_cli(conn)
            await serving.delete_endpoint(conn, endpoint_id=await _endpoint_id(conn, project, endpoint))

    on_database(work)
    typer.echo(f"deleted {endpoint}")


@token_app.command("create")
def token_create_command(endpoint: str, name: str, project: ProjectOption) -> None:
    """A token for ENDPOINT's invocations, printed once."""

    async def work(conn: psycopg.AsyncConnection) -> str:
        async with conn.transaction():
            await act_as_cli(conn)
            endpoint_id = await _endpoint_id(conn, project, endpoint)
            return await serving.create_token(conn, endpoint_id=endpoint_id, name=name)

    typer.echo(on_database(work))


@token_app.command("revoke")
def token_revoke_command(endpoint: str, name: str, project: ProjectOption) -> None:
    """Revoke token NAME of ENDPOINT."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        async with conn.transaction():
            await act_as_cli(conn)
            await serving.revoke_token(conn, endpoint_id=await _endpoint_id(conn, project, endpoint), name=name)

    on_database(work)
    typer.echo(f"revoked {name}")
