"""`lakehouse bundle validate|plan|deploy|export|schema`: GitOps bundles against the control plane."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import ExportTargetNotEmpty, export_bundle
from control_room.bundle.loader import LoadedBundle, load_bundle
from control_room.bundle.models import bundle_json_schema
from control_room.bundle.plan import Plan
from control_room.bundle.source import InvalidInput
from control_room.bundle.store import LiveConfigurationError, UnknownOrg
from control_room.config import get_settings
from control_room.db.connection import connect
from control_room.services.bundles import user_id_by_email
from control_room.supervisor import SupervisorError, control_plane_database, describe_url
from control_room.validators.results import CheckResult
from control_room.validators.schemas import render_schema

app = typer.Typer(
    help="GitOps bundles: a YAML directory of job templates, schedules, routing, caps, alerts and gates.",
    no_args_is_help=True,
)

BundlePath = typer.Argument(..., help="Bundle directory (or a single bundle file).", show_default=False)
FormatOption = typer.Option("text", "--format", help="text or json.")
TargetOption = typer.Option(
    None,
    "--target",
    help="dev, staging or prod: the job versions of the bundle are meant to run there too. A gated environment "
    "takes no version from a bundle: a version not deployed there opens a promotion request instead.",
)


@contextmanager
def control_plane_connection() -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the control plane (LAKEHOUSE_DATABASE_URL, else the embedded Postgres)."""
    try:
        with control_plane_database(get_settings()) as database:
            try:
                conn = connect(database.url, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise SupervisorError(
                    f"cannot connect to Postgres at {describe_url(database.url)}: {str(exc).strip()}. "
                    "Check LAKEHOUSE_DATABASE_URL (unset it to use the embedded Postgres)."
                ) from exc
            with conn:
                yield conn
    except SupervisorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except psycopg.errors.UndefinedTable as exc:
        typer.echo(
            f"error: the control plane is missing tables ({str(exc).strip().splitlines()[0]}): "
            "run `lakehouse db migrate`",
            err=True,
        )
        raise typer.Exit(1) from exc


def _load_or_exit(path: Path, output_format: str = "text") -> LoadedBundle:
    try:
        return load_bundle(path)
    except InvalidInput as exc:
        _report_problems(exc, output_format)
        raise typer.Exit(1) from exc


def _report_problems(exc: InvalidInput, output_format: str) -> None:
    if output_format == "json":
        typer.echo(json.dumps({"valid": False, "problems": [p.as_json() for p in exc.problems]}, indent=2))
    for problem in exc.problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"{len(exc.problems)} problem(s) found", err=True)


def _check_format(output_format: str) -> None:
    if output_format not in ("text", "json"):
        typer.echo(f"error: --format must be text or json, not {output_format!r}", err=True)
        raise typer.Exit(2)


@app.command("validate")
def validate_command(
    path: Path = BundlePath,
    output_format: str = FormatOption,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Also write a CI check result (JSON) here.")
    ] = None,
) -> None:
    """Check a bundle offline: schema, duplicates, references, cron, time zones, params against templates."""
    _check_format(output_format)
    started = time.monotonic()
    try:
        loaded = load_bundle(path)
    except InvalidInput as exc:
        if json_out:
            CheckResult(
                name="bundle",
                status="failed",
                summary=f"{path}: {len(exc.problems)} problem(s)",
                details=[str(p) for p in exc.problems],
                duration_s=round(time.monotonic() - started, 3),
            ).write(json_out)
        _report_problems(exc, output_format)
        raise typer.Exit(1) from exc
    counts = {
        section: len(getattr(loaded.bundle, section))
        for section in type(loaded.bundle).model_fields
        if section != "org"
    }
    described = ", ".join(f"{n} {section}" for section, n in counts.items())
    if json_out:
        CheckResult(
            name="bundle",
            status="passed",
            summary=f"{path} is valid (org {loaded.bundle.org}: {described})",
            duration_s=round(time.monotonic() - started, 3),
        ).write(json_out)
    if output_format == "json":
        typer.echo(json.dumps({"valid": True, "org": loaded.bundle.org, "counts": counts}, indent=2))
    else:
        typer.echo(f"{path}: valid bundle for org {loaded.bundle.org} ({described})")


def _echo_plan(plan: Plan, output_format: str) -> None:
    if output_format == "json":
        typer.echo(json.dumps(plan.as_json(), indent=2, ensure_ascii=False))
    else:
        typer.echo(plan.render())


@app.command("plan")
def plan_command(
    path: Path = BundlePath,
    output_format: str = FormatOption,
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when there are changes (0: none, 1: error)."
    ),
    target: str | None = TargetOption,
) -> None:
    """Show what deploying the bundle would change on the live control plane (reads only)."""
    _check_format(output_format)
    _check_target(target)
    loaded = _load_or_exit(path, output_format)
    with control_plane_connection() as conn:
        try:
            plan = plan_bundle(conn, loaded, target=target)
        except InvalidInput as exc:
            _report_problems(exc, output_format)
            raise typer.Exit(1) from exc
        except LiveConfigurationError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    _echo_plan(plan, output_format)
    if detailed_exitcode and not plan.is_empty:
        raise typer.Exit(2)


@app.command("deploy")
def deploy_command(
    path: Path = BundlePath,
    output_format: str = FormatOption,
    actor: str | None = typer.Option(None, "--actor", help="Who deploys, for the audit log (default: cli:<user>)."),
    target: str | None = TargetOption,
    as_user: str | None = typer.Option(
        None,
        "--as",
        help="E-mail of the person deploying: with --target, the requester of the promotion requests it opens "
        "(who may then not approve them: four eyes), and the audit log's actor unless --actor is given.",
    ),
) -> None:
    """Apply the bundle in one transaction; deploying the same bundle again changes nothing. With --target, a
    gated environment gets promotion requests for the bundle's versions, not the versions themselves."""
    _check_format(output_format)
    _check_target(target)
    loaded = _load_or_exit(path, output_format)
    with control_plane_connection() as conn:
        user_id = None
        if as_user is not None:
            user_id = user_id_by_email(conn, as_user)
            if user_id is None:
                typer.echo(f'error (--as): no user with e-mail "{as_user}"; create one with `lakehouse users create`',
                           err=True)  # fmt: skip
                raise typer.Exit(1)
        try:
            plan = deploy_bundle(
                conn, loaded, actor=actor or as_user or f"cli:{getpass.getuser()}", target=target, user_id=user_id
            )
        except InvalidInput as exc:
            _report_problems(exc, output_format)
            raise typer.Exit(1) from exc
        except (LiveConfigurationError, psycopg.Error) as exc:
            # The transaction rolled back as a whole: say so, with the database's reason.
            typer.echo(f"error: nothing was deployed: {str(exc).strip().splitlines()[0]}", err=True)
            raise typer.Exit(1) from exc
    _echo_plan(plan, output_format)
    if output_format == "text":
        typer.echo("Nothing to deploy." if plan.is_empty else f"Deployed {len(plan.changes)} change(s).")
        requested = [step for step in plan.targets if step.outcome == "requested"]
        if requested:
            typer.echo(
                f"{plan.target} is gated: opened {len(requested)} promotion request(s) instead of deploying "
                f"{', '.join(f'{s.job} v{s.version}' for s in requested)} there; they run in {plan.target} once "
                "promoted (lakehouse promotions list / show)."
            )


def _check_target(target: str | None) -> None:
    if target is not None and target not in ("dev", "staging", "prod"):
        typer.echo(f"error: --target must be dev, staging or prod, not {target!r}", err=True)
        raise typer.Exit(2)


@app.command("export")
def export_command(
    directory: Annotated[Path, typer.Argument(help="Where to write the bundle.", show_default=False)],
    org: str = typer.Option("demo", "--org", help="Slug of the org to export."),
    force: bool = typer.Option(False, "--force", help="Replace YAML files already in the directory."),
) -> None:
    """Write the org's live configuration as a bundle (which validates and plans with no changes)."""
    with control_plane_connection() as conn:
        try:
            written = export_bundle(conn, org, directory, force=force)
        except (UnknownOrg, LiveConfigurationError, ExportTargetNotEmpty) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    for path in written:
        typer.echo(f"wrote {path}")


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a bundle file (spec/bundle.schema.json; `lakehouse validate schemas --write`)."""
    typer.echo(render_schema(bundle_json_schema()), nl=False)
