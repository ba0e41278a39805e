"""`lakehouse routing ...`, `lakehouse caps list|set|delete` and `lakehouse governance ...`: the routing matrix
with its warnings, the routing simulator, caps with live usage and their edits, drift against the last
deployed bundle, the bundle as a zip, and the bundle-only lock. The CLI is a trusted caller; every edit is
audited in SQL with the local user as actor."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
import yaml

from control_room.commands.alerts import _print
from control_room.commands.bundle import control_plane_connection
from control_room.commands.jobs import _actor
from control_room.commands.on_database import on_database
from control_room.services import caps, governance, routing
from control_room.services.auth import resolve_org
from control_room.services.errors import Invalid

routing_app = typer.Typer(
    help="The routing matrix: its rules and warnings, and where a task would go.", no_args_is_help=True
)
governance_app = typer.Typer(
    help="GitOps drift of routing and caps against the deployed bundle; export; bundle-only lock.", no_args_is_help=True
)

OrgOption = Annotated[str | None, typer.Option("--org", help="Org slug or id (needed when several exist).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _matrix(org: str | None) -> routing.Matrix:
    async def work(conn: psycopg.AsyncConnection) -> routing.Matrix:
        return await routing.load_matrix(conn, org_id=await resolve_org(conn, org))

    return on_database(work)


@routing_app.command("rules")
def rules_command(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """The rules in priority order, then the matrix's warnings (shadowed rules, pools without executors, ...)."""
    matrix = _matrix(org)
    found = routing.warnings(matrix)
    if as_json:
        typer.echo(json.dumps({"rules": [asdict(r) for r in matrix.rules], "warnings": [asdict(w) for w in found]}))
        return
    rows = [
        {**asdict(r), "match": ", ".join(_match_words(r)) or "(any task)", "labels": ",".join(r.required_labels)}
        for r in matrix.rules
    ]
    _print(rows, ["position", "name", "match", "pool", "labels", "owner", "enabled"], False)
    for warning in found:
        typer.echo(f"warning: {warning.name + ': ' if warning.name else ''}{warning.message}")


def _match_words(rule: routing.RuleDraft) -> list[str]:
    words = [f"{name}={getattr(rule, name)}" for name in ("project", "environment", "engine") if getattr(rule, name)]
    words += [f"labels={'+'.join(rule.labels)}"] if rule.labels else []
    words += [f"tags={'+'.join(rule.tags)}"] if rule.tags else []
    return words


@routing_app.command("explain")
def explain_command(
    project: Annotated[str, typer.Option(help="Project slug.")],
    environment: Annotated[str, typer.Option(help="dev, staging or prod.")],
    engine: Annotated[str, typer.Option(help="The task's engine (shell, python, dbt, spark, ...).")],
    label: Annotated[list[str] | None, typer.Option("--label", help="A task label (repeat).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A run tag (repeat).")] = None,
    pool: Annotated[str, typer.Option(help="The pool the spec names (used where the rule allows it).")] = "",
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which rule routes such a task, why each earlier one did not, the pool, who could claim it, the caps."""
    if environment not in routing.ENVIRONMENTS:
        raise typer.BadParameter("--environment must be dev, staging or prod")
    probe = routing.TaskProbe(project, environment, engine, tuple(label or ()), tuple(tag or ()), pool)

    async def work(conn: psycopg.AsyncConnection) -> routing.Simulation:
        matrix = await routing.load_matrix(conn, org_id=await resolve_org(conn, org))
        return await routing.simulate(conn, matrix=matrix, probe=probe)

    sim = on_database(work)
    if as_json:
        out = {
            "rule": sim.route.rule, "pool": sim.route.pool, "required_labels": list(sim.route.required_labels),
            "verdicts": [asdict(v) for v in sim.route.verdicts], "executors": [e.name for e in sim.executors],
            "caps": [{"name": c.name, "kind": c.kind, "limit": c.limit, "tightest": t} for c, t in sim.caps],
            "waits": sim.waits,
        }  # fmt: skip
        typer.echo(json.dumps(out, default=str))
        return
    for verdict in sim.route.verdicts:
        mark = "MATCH" if verdict.matched else "skip "
        typer.echo(f"{mark} {verdict.name}" + ("" if verdict.matched else f": {'; '.join(verdict.reasons)}"))
    typer.echo(f"-> pool {sim.route.pool}" + (f" (rule {sim.route.rule})" if sim.route.rule else " (no rule matched)"))
    typer.echo(f"executors that could claim it now: {', '.join(e.name for e in sim.executors) or 'none'}")
    for cap, tightest in sim.caps:
        typer.echo(f"cap {cap.name}: {cap.kind} <= {cap.limit}{' (tightest)' if tightest else ''}")
    for wait in sim.waits:
        typer.echo(f"would wait: {wait}")


def add_caps_commands(app: typer.Typer) -> None:
    """Register `caps list`, `caps set` and `caps delete` on the `caps` group (beside `caps report`)."""
    app.command("list")(caps_list_command)
    app.command("set")(caps_set_command)
    app.command("delete")(caps_delete_command)
    app.command("effective")(caps_effective_command)
    app.command("refusals")(caps_refusals_command)


def caps_list_command(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Every cap with its live usage, the layer that enforces it and its refusals over 7 days."""

    async def work(conn: psycopg.AsyncConnection) -> list[caps.CapView]:
        return await caps.list_caps(conn, org_id=await resolve_org(conn, org))

    rows = [asdict(c) for c in on_database(work)]
    columns = ["name", "target", "kind", "limit", "used_label", "layer", "waiting_reason", "refusals_7d", "enabled"]
    _print(rows, columns, as_json)


def caps_refusals_command(
    name: Annotated[str | None, typer.Argument(help="Only this cap, a page at a time (default: every cap).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Rows per page (with a cap's name).")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page: the cursor the previous page printed.")] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """The last refusals each cap caused: submits refused (no run), tasks held in the queue (from when to
    when), attempts stopped by the agent (output, runtime, memory, cores) and queries the engine refused.

    With a cap's name, its refusals over 30 days, newest first, a page at a time."""

    async def work(conn: psycopg.AsyncConnection) -> tuple[list[tuple[str, caps.Refusal]], str | None]:
        org_id = await resolve_org(conn, org)
        if name is not None:
            cap_id = await caps.cap_id_by_name(conn, org_id=org_id, name=name)
            page, after = await caps.refusal_page(conn, org_id=org_id, cap_id=cap_id, limit=limit, cursor=cursor)
            return [(name, r) for r in page], after
        views = await caps.list_caps(conn, org_id=org_id)
        return [(c.name, r) for c in views for r in c.recent], None

    found, after = on_database(work)
    rows = [_refusal_row(cap, r) for cap, r in found]
    if as_json:
        typer.echo(json.dumps({"items": rows, "next_cursor": after}, default=str))
        return
    if not rows:
        typer.echo("no refusals in the projects you can see")
        return
    _print(rows, ["cap", "at", "until", "layer", "run", "task", "by", "message"], False)
    if after:
        typer.echo(f"more: --cursor {after}")


def _refusal_row(cap: str, r: caps.Refusal) -> dict[str, Any]:
    until = r.ended_at.strftime("%Y-%m-%d %H:%M:%S") if r.ended_at else ("waiting" if r.layer == "claim" else "")
    message = r.message + (f" (x{r.repeats})" if r.repeats > 1 else "")
    return {
        "cap": cap, "at": r.at.strftime("%Y-%m-%d %H:%M:%S"), "until": until, "layer": r.layer,
        "run": r.run_id or f"(refused: {r.run_name})", "task": r.task_key, "by": r.principal,
        "where": f"{r.project}/{r.environment}", "message": message,
    }  # fmt: skip


def caps_effective_command(
    project: Annotated[str, typer.Option(help="Project slug.")],
    environment: Annotated[str, typer.Option(help="dev, staging or prod.")],
    spec: Annotated[
        Path | None, typer.Option(help="A run spec or one task spec, YAML or JSON ('-' reads standard input).")
    ] = None,
    template: Annotated[str | None, typer.Option(help="A job template's latest version instead of --spec.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A run tag (repeat).")] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which limits apply to each task of a spec and which is tightest of each kind (nothing is submitted)."""
    if (spec is None) == (template is None):
        raise typer.BadParameter("give either --spec FILE or --template NAME")
    document: Any = None
    if spec is not None:
        text = sys.stdin.read() if str(spec) == "-" else spec.read_text()
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"--spec is not YAML or JSON: {exc}") from exc

    async def work(conn: psycopg.AsyncConnection) -> list[caps.TaskLimits]:
        org_id = await resolve_org(conn, org)
        chosen = document
        if template is not None:
            found = {name: s for slug, name, s in await caps.template_specs(conn, org_id=org_id) if slug == project}
            if template not in found:
                raise Invalid(
                    f'project {project} has no job template "{template}" (templates: '
                    f"{', '.join(sorted(found)) or 'none'})",
                    field="template",
                )
            chosen = found[template]
        return await caps.effective_for_spec(
            conn, org_id=org_id, project=project, environment=environment, spec=chosen, tags=tuple(tag or ())
        )

    found = on_database(work)
    if as_json:
        out = [
            {"task": t.key, "engine": t.engine, "pool": t.pool, "rule": t.rule,
             "limits": [{"kind": x.kind, "limit": x.limit, "layer": x.layer, "source": x.source, "target": x.target,
                         "tightest": x.tightest} for x in t.limits]}
            for t in found
        ]  # fmt: skip
        typer.echo(json.dumps(out))
        return
    for task in found:
        rule = f"rule {task.rule}" if task.rule else "no rule matched"
        typer.echo(f"task {task.key} ({task.engine}) -> pool {task.pool} ({rule})")
        if not task.limits:
            typer.echo("  no cap applies")
        for limit in task.limits:
            mark = "TIGHTEST" if limit.tightest else "        "
            unit = caps.UNIT[limit.kind]
            typer.echo(
                f"  {mark} {limit.kind} <= {limit.limit:,} {unit}: {limit.source} ({limit.target}, {limit.layer})"
            )


def caps_set_command(
    name: Annotated[str, typer.Argument(help="The cap's name (created when new).")],
    scope: Annotated[str, typer.Option(help="org, project, environment, pool or engine.")],
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(caps.KINDS)}.")],
    limit: Annotated[int, typer.Option(help="The limit (0 or more).")],
    project: Annotated[str, typer.Option(help="Project slug (project and environment scope).")] = "",
    environment: Annotated[str, typer.Option(help="dev, staging or prod (environment scope).")] = "",
    pool: Annotated[str, typer.Option(help="Pool (pool scope).")] = "",
    engine: Annotated[str, typer.Option(help="Engine (engine scope).")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Save it switched off.")] = False,
    org: OrgOption = None,
) -> None:
    """Create or change a cap (audited; `lakehouse bundle export` writes it back to the bundle)."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        org_id = await resolve_org(conn, org)
        existing = {c.name: c.id for c in await caps.list_caps(conn, org_id=org_id)}
        draft = caps.CapDraft(name=name, scope=scope, kind=kind, limit=limit, project=project, environment=environment,
                              pool=pool, engine=engine, enabled=not disabled, id=existing.get(name, ""))  # fmt: skip
        await caps.save_cap(conn, org_id=org_id, draft=draft, by=_actor())

    on_database(work)
    typer.echo(f"saved cap {name}")


def caps_delete_command(name: Annotated[str, typer.Argument(help="The cap's name.")], org: OrgOption = None) -> None:
    """Delete a cap and its usage history (audited)."""

    async def work(conn: psycopg.AsyncConnection) -> None:
        org_id = await resolve_org(conn, org)
        await caps.delete_cap(conn, cap_id=await caps.cap_id_by_name(conn, org_id=org_id, name=name), by=_actor())

    on_database(work)
    typer.echo(f"deleted cap {name}")


def _sync(org: str | None, work: Any) -> Any:
    """``work(conn, slug)`` on a synchronous connection (the bundle code's); the org named by slug or id."""
    slug = on_database(lambda conn: _org_slug(conn, org))
    with control_plane_connection() as conn:
        try:
            return work(conn, slug)
        except LookupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


async def _org_slug(conn: psycopg.AsyncConnection, org: str | None) -> str:
    return await governance.org_slug(conn, org_id=await resolve_org(conn, org))


@governance_app.command("drift")
def drift_command(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """What changed in routing, caps and the rest since the bundle was last deployed (edits made outside it)."""
    drift: governance.Drift = _sync(org, lambda conn, slug: governance.drift(conn, org=slug))
    if as_json:
        out = {"org": drift.org, "has_drift": drift.has_drift, "changes": drift.lines(),
               "deployed_at": drift.deployed_at, "bundle_only": drift.bundle_only}  # fmt: skip
        typer.echo(json.dumps(out, default=str))
        return
    if drift.deployed_at is None:
        typer.echo(f"org {drift.org} has no recorded bundle deploy yet: run `lakehouse bundle deploy` first")
        return
    if not drift.has_drift:
        typer.echo(f"no drift: org {drift.org} matches the bundle deployed {drift.deployed_at:%Y-%m-%d %H:%M} UTC")
        return
    typer.echo(f"drift since the bundle deployed {drift.deployed_at:%Y-%m-%d %H:%M} UTC by {drift.deployed_by}:")
    for line in drift.lines():
        typer.echo(f"  {line}")
    typer.echo("export the live configuration with `lakehouse bundle export DIR` and commit it to the bundle")


@governance_app.command("export-zip")
def export_zip_command(
    out: Annotated[Path, typer.Option("--out", help="The zip file to write.")], org: OrgOption = None
) -> None:
    """The live configuration as a canonical bundle folder in a zip."""
    data: bytes = _sync(org, lambda conn, slug: governance.export_zip(conn, org=slug))
    out.write_bytes(data)
    typer.echo(f"wrote {out} ({len(data)} bytes)")


@governance_app.command("lock")
def lock_command(
    location: Annotated[str, typer.Option(help="Where the bundle lives (repository URL or path).")],
    org: OrgOption = None,
) -> None:
    """Refuse routing and caps edits from the pages, API and CLI: changes go through the bundle only."""
    _set_lock(org, True, location)
    typer.echo(f"locked: routing and caps change only through the bundle at {location}")


@governance_app.command("unlock")
def unlock_command(org: OrgOption = None) -> None:
    """Allow routing and caps edits from the pages, API and CLI again (audited)."""
    _set_lock(org, False, "")
    typer.echo("unlocked: admins may edit routing and caps in the pages, API and CLI")


def _set_lock(org: str | None, bundle_only: bool, location: str) -> None:
    async def work(conn: psycopg.AsyncConnection) -> None:
        org_id = await resolve_org(conn, org)
        await governance.set_lock(conn, org_id=org_id, bundle_only=bundle_only, location=location, by=_actor())

    on_database(work)
