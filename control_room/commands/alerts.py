"""`lakehouse alerts ...`: list rules and incidents; ack, snooze or resolve an incident; mute a job."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from control_room.commands.jobs import _actor
from control_room.commands.on_database import on_database
from control_room.services import alerts
from control_room.services.auth import resolve_org

app = typer.Typer(help="Alert rules and incidents: list them, ack, snooze, resolve.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        typer.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "-")) for r in rows)) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        typer.echo("  ".join(str(r.get(c) if r.get(c) is not None else "-").ljust(widths[c]) for c in columns))


def parse_until(text: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``1d`` from now, or an ISO 8601 time (UTC when it has no offset)."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now + timedelta(**{unit: int(match.group(1))})
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: give a duration such as 30m, 2h, 1d or an ISO time") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@app.command("rules")
def rules(as_json: JsonOption = False) -> None:
    """Alert rules with their last firing and open incidents."""
    rows = on_database(lambda conn: alerts.list_rules(conn))
    _print(rows, ["name", "kind", "severity", "enabled", "open_incidents", "incidents", "last_fired_at"], as_json)


@app.command("incidents")
def incidents(
    state: Annotated[str | None, typer.Option(help="open, acked or resolved.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Incidents, most recently fired first."""
    if state not in (None, "open", "acked", "resolved"):
        raise typer.BadParameter("--state must be open, acked or resolved")
    rows = on_database(lambda conn: alerts.list_incidents(conn, state=state, limit=limit))
    _print(rows, ["id", "state", "severity", "rule_name", "subject", "count", "last_fired_at"], as_json)


def _act(incident_id: uuid.UUID, action: str, until: datetime | None = None) -> None:
    async def work(conn: Any) -> dict[str, Any]:
        return await alerts.act(
            conn,
            incident_id=incident_id,
            action=action,
            user_id=None,
            actor=_actor(),
            until=until,
            at=datetime.now(UTC),
        )

    row = on_database(work)
    suffix = f" until {until.isoformat()}" if until else ""
    typer.echo(f"incident {incident_id}: {row['state']}{suffix}")


@app.command("ack")
def ack(incident_id: uuid.UUID) -> None:
    """Acknowledge an incident: escalation stops."""
    _act(incident_id, "ack")


@app.command("snooze")
def snooze(
    incident_id: uuid.UUID,
    until: Annotated[str, typer.Option(help="A duration from now (30m, 2h, 1d) or an ISO 8601 time.")],
) -> None:
    """Snooze an incident: no messages and no escalation until then."""
    _act(incident_id, "snooze", parse_until(until, datetime.now(UTC)))


@app.command("resolve")
def resolve(incident_id: uuid.UUID) -> None:
    """Resolve an incident by hand."""
    _act(incident_id, "resolve")


OrgOption = Annotated[str | None, typer.Option("--org", help="Org slug or id (default: the only org).")]


def _mute(job: str, org: str | None, mute: bool, until: datetime | None) -> None:
    async def work(conn: Any) -> bool:
        org_id = await resolve_org(conn, org)
        return await alerts.set_mute(conn, org_id=org_id, job=job, mute=mute, until=until, user_id=None, actor=_actor())

    on_database(work)
    state = f"muted until {until.isoformat()}" if mute and until else "muted" if mute else "unmuted"
    typer.echo(f"job {job}: {state}")


@app.command("mute")
def mute(
    job: Annotated[str, typer.Argument(help='The job as incidents name it: "<project>/<job name>".')],
    org: OrgOption = None,
    until: Annotated[
        str | None, typer.Option(help="A duration (30m, 2h, 1d) or an ISO time; default: until unmuted.")
    ] = None,
) -> None:
    """Mute a job for everyone in the org: its incidents still open and count, but nobody is told."""
    _mute(job, org, True, parse_until(until, datetime.now(UTC)) if until else None)


@app.command("unmute")
def unmute(job: str, org: OrgOption = None) -> None:
    """Unmute a job."""
    _mute(job, org, False, None)


@app.command("mutes")
def mutes(as_json: JsonOption = False) -> None:
    """Jobs muted now, per org."""
    rows = on_database(lambda conn: alerts.mutes(conn, now=datetime.now(UTC)))
    _print(rows, ["org_id", "job", "until", "muted_by"], as_json)
