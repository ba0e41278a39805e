"""`lakehouse catalog openmetadata-sync`: push the catalog to OpenMetadata and pull its curation back."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
import typer

from control_room.commands.jobs import _actor
from control_room.commands.on_database import on_database
from control_room.config import get_settings
from control_room.services import openmetadata
from control_room.services.auth import ServicePrincipal
from control_room.services.openmetadata_client import OpenMetadataClient, OpenMetadataError

app = typer.Typer(help="The dataset catalog: sync with OpenMetadata.", no_args_is_help=True)


def print_report(report: dict[str, Any]) -> None:
    verb = "would" if report["dry_run"] else "did"
    typer.echo(
        f"{report['tables']} tables under service {report['service']}: {verb} push {report['pushed']} "
        f"and pull {report['pulled']} changes"
    )
    for change in report["changes"]:
        fields = f" ({', '.join(change['fields'])})" if change["fields"] else ""
        typer.echo(f"  {change['direction']:<4}  {change['action']:<13} {change['target']}{fields}")
    for warning in report["warnings"]:
        typer.echo(f"  warning: {warning}")


@app.command("openmetadata-sync")
def openmetadata_sync_command(
    project: Annotated[str, typer.Option("--project", help="The project (slug or id) whose datasets sync.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the differences; write nothing anywhere.")] = False,
    service: Annotated[
        str | None, typer.Option("--service", help="OpenMetadata database service (default: settings).")
    ] = None,
) -> None:
    """Push datasets, columns, owners and lineage to OpenMetadata (LAKEHOUSE_OPENMETADATA_URL, _TOKEN), then
    pull its owners, tags, glossary terms and descriptions onto the datasets. A second run changes nothing."""
    settings = get_settings()
    if not settings.openmetadata_url or settings.openmetadata_token is None:
        typer.echo(
            "error (openmetadata_url): set LAKEHOUSE_OPENMETADATA_URL and LAKEHOUSE_OPENMETADATA_TOKEN "
            "(a bot's JWT from OpenMetadata's Settings > Bots)",
            err=True,
        )
        raise typer.Exit(2)
    url, token = settings.openmetadata_url, settings.openmetadata_token.get_secret_value()

    async def sync(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with OpenMetadataClient(url, token) as client:
            report = await openmetadata.sync_openmetadata(
                conn,
                ServicePrincipal(name=_actor()),
                client,
                project=project,
                service=service or settings.openmetadata_service,
                dry_run=dry_run,
            )
        return report.as_dict()

    try:
        report = on_database(sync)
    except OpenMetadataError as exc:
        typer.echo(f"error (openmetadata): {exc}", err=True)
        raise typer.Exit(1) from exc
    print_report(report)
