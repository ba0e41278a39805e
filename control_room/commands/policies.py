"""`lakehouse policies ...`: access policies, groups and service principals (list, set, delete), the
simulator, and the export of the policies as Trino file-based access control rules (rules.json). The CLI
is a trusted caller; every change is audited in SQL with the local user as actor."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import psycopg
import typer

from control_room.commands.alerts import _print
from control_room.commands.jobs import _actor
from control_room.commands.on_database import on_database
from control_room.services import access_policies, policy_previews, result_policies, trino_rules
from control_room.services.auth import resolve_org
from control_room.services.errors import from_db_error
from control_room.services.runs import resolve_project

app = typer.Typer(
    help="Access policies: grants, row filters and column masks; groups, service principals; Trino export.",
    no_args_is_help=True,
)
T = TypeVar("T")
OrgOption = Annotated[str | None, typer.Option("--org", help="Org slug or id (needed when several exist).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _in_org(work: Callable[[psycopg.AsyncConnection, Any], Awaitable[T]], org: str | None) -> T:
    """Run ``work(conn, org_id)`` as the local user (audited as cli:<user>); DB refusals become CLI errors."""

    async def run(conn: psycopg.AsyncConnection) -> T:
        try:
            async with conn.transaction():
                await access_policies.act_as(conn, _actor())
                return await work(conn, await resolve_org(conn, org))
        except psycopg.Error as exc:
            error = from_db_error(exc)
            if error is None:
                raise
            raise error from exc

    return on_database(run)


@app.command("list")
def list_command(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """The org's policies by name."""
    rows = _in_org(lambda conn, org_id: access_policies.list_policies(conn, org_id=org_id), org)
    for row in rows:
        row["target"] = row.pop("dataset_name") or row["target"]
        row["what"] = row["privilege"] or row["row_filter"] or f"{row['mask_kind']} {row['mask_column'] or ''}".strip()
        row["who"] = f"{row['principal_kind']} {row['principal']}".strip()
    _print(rows, ["name", "kind", "target_kind", "target", "who", "what"], as_json)


@app.command("set")
def set_command(
    name: Annotated[str, typer.Argument(help="The policy's name (an existing one is updated).")],
    kind: Annotated[str, typer.Option("--kind", help="grant, deny, row_filter or column_mask")],
    target: Annotated[str, typer.Option("--target", help="A dataset (id or name), a schema prefix or a tag.")],
    target_kind: Annotated[str, typer.Option("--target-kind", help="dataset, schema or tag")] = "dataset",
    group: Annotated[str | None, typer.Option("--group", help="For the members of this group.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="For this user (e-mail).")] = None,
    service_principal: Annotated[str | None, typer.Option("--service-principal")] = None,
    privilege: Annotated[str | None, typer.Option("--privilege", help="read, write or admin (grant/deny)")] = None,
    row_filter: Annotated[str | None, typer.Option("--row-filter", help="A SQL predicate (row_filter)")] = None,
    mask_column: Annotated[str | None, typer.Option("--mask-column", help="The column to mask")] = None,
    mask_kind: Annotated[str | None, typer.Option("--mask", help="null, hash, redact, partial or expression")] = None,
    mask_expression: Annotated[str | None, typer.Option("--mask-expression")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    org: OrgOption = None,
) -> None:
    """Create or update a policy; without --group/--user/--service-principal it applies to everyone."""
    principal_kind, principal = next(
        ((k, v) for k, v in (("group", group), ("user", user), ("service_principal", service_principal)) if v),
        ("everyone", ""),
    )

    async def work(conn: psycopg.AsyncConnection, org_id: Any) -> Any:
        resolved = target
        if target_kind == "dataset":
            resolved = await access_policies.dataset_target(conn, org_id=org_id, dataset=target)
        live = {p["name"]: p["id"] for p in await access_policies.list_policies(conn, org_id=org_id)}
        body = {
            "name": name, "kind": kind, "target_kind": target_kind, "target": resolved,
            "principal_kind": principal_kind, "principal": principal, "privilege": privilege,
            "row_filter": row_filter, "mask_column": mask_column, "mask_kind": mask_kind,
            "mask_expression": mask_expression, "description": description,
        }  # fmt: skip
        return await access_policies.save_policy(conn, org_id=org_id, body=body, policy_id=live.get(name))

    typer.echo(f"saved policy {name} ({_in_org(work, org)})")


def _delete_command(what: str, delete: Callable[..., Awaitable[None]]) -> Callable[[str, str | None], None]:
    """`... NAME [--org]`: ``delete(conn, org_id=, name=)`` the org's ``what`` of that name, and say so."""

    def command(name: str, org: OrgOption = None) -> None:
        _in_org(lambda conn, org_id: delete(conn, org_id=org_id, name=name), org)
        typer.echo(f"deleted {what} {name}")

    return command


app.command("delete", help="Delete a policy by name.")(_delete_command("policy", access_policies.delete_policy))


@app.command("group")
def group_command(
    name: str,
    member: Annotated[
        list[str] | None, typer.Option("--member", help="user:<e-mail> or sp:<service principal> (repeat)")
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    org: OrgOption = None,
) -> None:
    """Create or replace a group with exactly these members."""
    members = []
    for item in member or []:
        kind, _, value = item.partition(":")
        if kind not in ("user", "sp") or not value:
            typer.echo(f"error (member): {item!r}: write user:<e-mail> or sp:<service principal>", err=True)
            raise typer.Exit(2)
        members.append({"kind": "user" if kind == "user" else "service_principal", "name": value})
    _in_org(
        lambda conn, org_id: access_policies.save_group(
            conn, org_id=org_id, name=name, description=description, members=members
        ),
        org,
    )
    typer.echo(f"saved group {name} ({len(members)} members)")


@app.command("groups")
def groups_command(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """The org's groups and their members."""
    rows = _in_org(lambda conn, org_id: access_policies.list_groups(conn, org_id=org_id), org)
    for row in rows:
        row["members"] = ", ".join(f"{m['name']}" for m in row["members"]) if not as_json else row["members"]
    _print(rows, ["name", "members", "description"], as_json)


@app.command("refusals")
def refusals_command(
    org: OrgOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Statements the agents refused for a missing privilege: who, dataset, privilege, policy, run."""
    rows = _in_org(lambda conn, org_id: access_policies.refusals(conn, org_id=org_id, limit=limit), org)
    _print(rows, ["at", "principal", "dataset", "privilege", "policy", "run_id"], as_json)


app.command("group-delete", help="Delete a group (its policies stay and match nobody).")(
    _delete_command("group", access_policies.delete_group)
)


@app.command("service-principal")
def service_principal_command(
    name: str, description: Annotated[str, typer.Option("--description")] = "", org: OrgOption = None
) -> None:
    """Create (or describe) a service principal; a job template may run as it."""
    _in_org(
        lambda conn, org_id: access_policies.save_service_principal(
            conn, org_id=org_id, name=name, description=description
        ),
        org,
    )
    typer.echo(f"saved service principal {name}")


@app.command("simulate")
def simulate_command(
    project: Annotated[str, typer.Option("--project", help="Project slug or id.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset id or name (e.g. main.orders).")],
    group: Annotated[str | None, typer.Option("--group")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
    service_principal: Annotated[str | None, typer.Option("--service-principal")] = None,
    privilege: Annotated[str, typer.Option("--privilege")] = "read",
    column: Annotated[str | None, typer.Option("--column")] = None,
    org: OrgOption = None,
) -> None:
    """Can this group/user/service principal use the privilege on the dataset (and read the column)? Why?"""
    kinds: list[tuple[Literal["group", "user", "service_principal"], str | None]] = [
        ("group", group), ("user", user), ("service_principal", service_principal),
    ]  # fmt: skip
    who = next(((k, v) for k, v in kinds if v), None)
    if who is None:
        typer.echo("error (principal): name one of --group, --user, --service-principal", err=True)
        raise typer.Exit(2)
    principal_kind, principal = who[0], str(who[1])

    async def work(conn: psycopg.AsyncConnection, _org: Any) -> access_policies.Verdict:
        return await access_policies.simulate(
            conn, project_id=await resolve_project(conn, project), principal_kind=principal_kind,
            principal=principal, dataset=dataset, privilege=privilege, column=column,
        )  # fmt: skip

    verdict = _in_org(work, org)
    typer.echo(f"{'ALLOWED' if verdict.allowed else 'DENIED'}: {verdict.reason}")
    raise typer.Exit(0 if verdict.allowed else 3)


@app.command("export")
def export_command(
    format: Annotated[str, typer.Option("--format", help="trino: file-based access control rules.json")] = "trino",
    catalog: Annotated[str, typer.Option("--catalog", help="The Trino catalog holding the datasets.")] = "lakehouse",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    org: OrgOption = None,
) -> None:
    """The policies as Trino file-based access control rules, for `security.config-file` of a real cluster."""
    if format != "trino":
        typer.echo(f"error (format): {format!r} is not supported; use --format trino", err=True)
        raise typer.Exit(2)
    rules = _in_org(lambda conn, org_id: trino_rules.export(conn, org_id=org_id, catalog=catalog), org)
    text = json.dumps(rules, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output} ({len(rules['tables'])} table rules)")


def _preview_principal(text: str) -> tuple[Literal["user", "service_principal", "group"], str]:
    kind, sep, value = text.partition(":")
    if sep and kind in ("user", "group", "sp") and value:
        return ("service_principal" if kind == "sp" else kind), value  # type: ignore[return-value]
    if not sep and text:
        return ("user", text) if "@" in text else ("group", text)
    typer.echo(f"error (as): {text!r}: write user:<e-mail>, group:<group> or sp:<service principal>", err=True)
    raise typer.Exit(2)


def _print_preview(result: policy_previews.PreviewResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.__dict__, default=str, indent=2))
        return
    names = [c["name"] for c in result.columns]
    _print([dict(zip(names, row, strict=True)) for row in result.rows], names, False)
    shown = len(result.rows)
    typer.echo(f"({shown} of {result.total_rows} rows as {result.principal_kind} {result.principal})")


@app.command("preview")
def preview_command(
    as_principal: Annotated[
        str, typer.Option("--as", help="user:<e-mail> (or an e-mail), group:<group> (a member), sp:<name>")
    ],
    sql: Annotated[
        str | None, typer.Option("--sql", help="One SELECT query (default: the dataset's first 20 rows).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="The dataset previewed (default: the query's first table).")
    ] = None,
    environment: Annotated[str, typer.Option("--environment", help="The run's environment.")] = "dev",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the rows (else print the run id).")] = True,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for the agent.")] = 120.0,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """As this principal, what does the query return? Runs it on the warehouse (DuckDB) as them: their
    refusals, row filters and masks apply by the agent's own rewrite; the run only reads."""
    kind, principal = _preview_principal(as_principal)
    if dataset is None:
        tables = sorted(result_policies.statement_sources("duckdb", sql or "").tables)
        if not tables:
            typer.echo("error (dataset): give --dataset, or a --sql query that reads one", err=True)
            raise typer.Exit(2)
        dataset = ".".join(tables[0])
    target = dataset

    async def work(conn: psycopg.AsyncConnection) -> policy_previews.PreviewStarted | policy_previews.PreviewResult:
        async with conn.transaction():
            await access_policies.act_as(conn, _actor())
            started = await policy_previews.start_preview(
                conn, org_id=await resolve_org(conn, org), dataset=target, principal_kind=kind, principal=principal,
                sql=sql, environment=environment, requested_by=None, requested_by_name=_actor(),
            )  # fmt: skip
        if not wait:
            return started
        deadline = time.monotonic() + timeout
        while True:
            result = await policy_previews.preview_result(conn, run_id=started.run_id)
            if result.done or time.monotonic() > deadline:
                return result
            await asyncio.sleep(0.5)  # the agent runs it: poll the run, up to the deadline

    outcome = on_database(work)
    if isinstance(outcome, policy_previews.PreviewStarted):
        typer.echo(f"preview run {outcome.run_id} of {outcome.dataset} as {outcome.principal_kind} {outcome.principal}")
        return
    if not outcome.done:
        typer.echo(f"error: preview run {outcome.run_id} is still {outcome.status} after {timeout:g} s", err=True)
        raise typer.Exit(1)
    if outcome.status != "succeeded" or outcome.error:
        typer.echo(f"error: preview run {outcome.run_id} {outcome.status}: {outcome.error}", err=True)
        raise typer.Exit(1)
    _print_preview(outcome, as_json)
