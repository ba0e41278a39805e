"""`lakehouse dashboards ...`: the shipped templates and a project's dashboards (list, show, clone, save)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer

from control_room.commands.on_database import cli_actor, on_database
from control_room.commands.project_option import ProjectOption, project_id_of
from control_room.dashboards.loader import parse_dashboard, shipped_templates
from control_room.services import auth, dashboards
from control_room.services.errors import Invalid

if TYPE_CHECKING:
    from control_room.db.tables import Dashboard

app = typer.Typer(help="Dashboards: shipped templates, a project's dashboards and their versions.",
                  no_args_is_help=True)  # fmt: skip


@app.command("templates")
def templates_command() -> None:
    """List the dashboard templates shipped with the product."""
    for name, template in shipped_templates().items():
        typer.echo(f"{name:16} {template.dashboard.title:20} {template.dashboard.description}")


@app.command("list")
def list_command(project: ProjectOption) -> None:
    """List the project's saved dashboards."""

    async def work(conn: psycopg.AsyncConnection) -> list[Dashboard]:
        return await dashboards.list_dashboards(conn, project_id=await project_id_of(conn, project))

    rows = on_database(work)
    if not rows:
        typer.echo("no dashboard yet: `lakehouse dashboards clone --project P TEMPLATE SLUG` starts one")
    for row in rows:
        typer.echo(f"{row.slug:24} v{row.latest_version:<4} {row.title}  (from {row.template or '-'})")


@app.command("show")
def show_command(
    project: ProjectOption, slug: str, version: Annotated[int | None, typer.Option("--version")] = None
) -> None:
    """Print a dashboard's YAML (the latest version, or --version N)."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await dashboards.get_dashboard(
            conn, project_id=await project_id_of(conn, project), slug=slug, version=version
        )

    typer.echo(on_database(work)["source_yaml"], nl=False)


def _say_saved(slug: str, saved: dict[str, Any]) -> None:
    typer.echo(f"dashboard {slug}: version {saved['version']}" + ("" if saved["new_version"] else " (unchanged)"))


@app.command("clone")
def clone_command(project: ProjectOption, template: str, slug: str) -> None:
    """Clone a shipped template into the project as dashboard SLUG."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        await auth.act_as(conn, cli_actor())
        return await dashboards.clone_template(
            conn, project_id=await project_id_of(conn, project), template=template, slug=slug, by=cli_actor()
        )

    _say_saved(slug, on_database(work))


@app.command("save")
def save_command(
    project: ProjectOption,
    slug: str,
    file: Annotated[Path, typer.Argument(help="The dashboard YAML (spec/dashboard.schema.json).")],
    message: Annotated[str, typer.Option("--message", "-m")] = "",
) -> None:
    """Save FILE as dashboard SLUG: created, or a new version when it changed."""
    if not file.is_file():
        typer.echo(f"error (file): {file} does not exist; pass the path of a dashboard YAML file", err=True)
        raise typer.Exit(1)
    source = file.read_text(encoding="utf-8")
    try:
        parse_dashboard(source)
    except Invalid as exc:
        typer.echo(f"error ({exc.field}): {exc.message}", err=True)
        raise typer.Exit(1) from exc

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await dashboards.save_dashboard(
            conn, project_id=await project_id_of(conn, project), slug=slug, source_yaml=source, message=message,
            by=cli_actor(),
        )  # fmt: skip

    _say_saved(slug, on_database(work))


@app.command("push")
def push_command(
    project: ProjectOption,
    slug: str,
    to: Annotated[str, typer.Option("--to", help="Where to push: superset (LAKEHOUSE_SUPERSET_URL).")] = "superset",
) -> None:
    """Create or update dashboard SLUG in Superset (idempotent: pushing again updates the same dashboard)."""
    from control_room.services import superset

    if to != "superset":
        typer.echo(f"error (--to): cannot push to {to!r}; the one target is superset", err=True)
        raise typer.Exit(1)

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await superset.push_dashboard(conn, project_id=await project_id_of(conn, project), slug=slug)

    pushed = on_database(work)
    typer.echo(f"dashboard {slug}: pushed to Superset as {pushed['slug']} (id {pushed['superset_id']}, "
               f"{len(pushed['charts'])} charts): {pushed['url']}")  # fmt: skip
    for name, why in pushed["skipped"].items():
        typer.echo(f"  left out {name}: {why}")
