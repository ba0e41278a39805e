"""Who hears of a promotion request's events, and how: the gate's approvers (and, once decided, the
requester) through their notification preferences, and the gate's ``notify`` targets, through the alert
deliveries outbox that the deliveries sender drains (e-mail, Slack, signed webhooks) and the bell.

Each event (opened, promoted, rejected, cancelled, superseded) is planned in the transaction that records
its notice (ops.open_promotion_notice, unique per request and event): any number of replicas plan it once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from control_room import routes
from control_room.db.rows import dict_rows
from control_room.services import notifications

Row = dict[str, Any]

EVENTS = ("opened", "promoted", "rejected", "cancelled", "superseded")
# An opened request asks something of its approvers; a decision only informs.
SEVERITY = {"opened": "warning"}
# How a promotion notice's delivery is queued (the arguments of ``notifications.enqueue_delivery``).
ENQUEUE_PROMOTION_DELIVERY = "select ops.enqueue_promotion_delivery(%s, %s, %s, %s, %s, %s, %s) as id"


async def unplanned_events(conn: AsyncConnection, *, limit: int = 50) -> list[Row]:
    """Request events with no notice yet (oldest first): every request's opening, and its decision."""
    return await dict_rows(
        conn,
        "select x.id as request_id, e.event from ops.promotion_requests x "
        "cross join lateral (values ('opened'), (x.status)) e(event) "
        "where x.updated_at > now() - interval '30 days' and e.event <> 'pending' "
        "and not exists (select 1 from ops.promotion_notices n "
        "                                           where n.request_id = x.id and n.event = e.event) "
        "order by x.created_at, e.event = 'opened' desc limit %s",
        (limit,),
    )


async def _request(conn: AsyncConnection, request_id: uuid.UUID) -> Row:
    rows = await dict_rows(
        conn,
        "select x.id, x.org_id, x.project_id, p.slug as project, t.name as job, x.version, x.from_environment, "
        "x.to_environment, x.kind, x.gate, x.requested_by, x.requested_by_id, x.comment, x.status, x.outcome, x.checks "
        "from ops.promotion_requests x join ops.job_templates t on t.id = x.template_id "
        "join ops.projects p on p.id = x.project_id where x.id = %s",
        (request_id,),
    )
    return rows[0]


def message(request: Row, event: str, base_url: str) -> dict[str, Any]:
    """The channel-neutral message of one request event: subject, text and the link to the request."""
    gate = request["gate"]
    what = f"{request['project']}/{request['job']} v{request['version']}"
    route = f"{request['from_environment']} -> {request['to_environment']}"
    link = base_url.rstrip("/") + routes.promotion_detail(str(request["id"]))
    asks = event == "opened" and int(gate.get("required_approvals") or 0) > 0
    if event == "opened" and request.get("kind") == "rollback":
        subject = f"[ROLLBACK] {what} in {request['to_environment']}" + (
            ": your approval is requested" if asks else " requested"
        )
        summary = (
            f"{request['requested_by']} asks to roll {request['project']}/{request['job']} in "
            f"{request['to_environment']} back to v{request['version']} (gate {gate.get('name')}; no checks)."
        )
    elif event == "opened":
        subject = f"[PROMOTION] {what} to {request['to_environment']}" + (
            ": your approval is requested" if asks else " requested"
        )
        summary = f"{request['requested_by']} asks to promote {what} ({route}, gate {gate.get('name')})."
    else:
        subject = f"[PROMOTION] {what} to {request['to_environment']}: {event}"
        summary = request["outcome"] or f"The request was {event}."
    lines = [summary, ""]
    if request["comment"]:
        lines += [f"Comment: {request['comment']}", ""]
    if event == "opened":
        lines.append("Checks so far:")
        lines += [f"  [{'x' if c['passed'] else ' '}] {c['label']}: {c['summary']}" for c in request["checks"] or []]
        lines += ["", f"Approvals needed: {gate.get('required_approvals', 0)} (not the requester's)", ""]
    lines.append(f"Review: {link}")
    return {
        "subject": subject,
        "summary": summary,
        "text": "\n".join(lines),
        "link": link,
        "event": event,
        "request_id": str(request["id"]),
        "job": what,
        "version": request["version"],
        "from_environment": request["from_environment"],
        "to_environment": request["to_environment"],
        "status": request["status"],
    }


def slack_payload(msg: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body (Block Kit) for a request event."""
    return {
        "text": msg["subject"],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": msg["subject"][:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": msg["summary"]}},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open the request"}, "url": msg["link"]}
                ],
            },
        ],
    }


def webhook_payload(msg: dict[str, Any]) -> dict[str, Any]:
    """The generic webhook body of a request event (signed by the sender as alert webhooks are)."""
    keys = ("request_id", "job", "version", "from_environment", "to_environment", "status", "summary")
    return {"type": f"promotion.{msg['event']}", **{k: msg[k] for k in keys}, "links": {"request": msg["link"]}}


async def _approvers(conn: AsyncConnection, request: Row, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``user_ids`` who may approve or reject the request (the SQL's rule: never the requester)."""
    rows = await dict_rows(
        conn,
        "select u.id from ops.users u where u.id = any(%s) and ops.promotion_refusal(%s, %s, u.id, %s) is null",
        (user_ids, request["project_id"], Jsonb(request["gate"]), request["requested_by_id"]),
    )
    return {row["id"] for row in rows}


async def plan_event(
    conn: AsyncConnection, *, request_id: uuid.UUID, event: str, now: datetime, base_url: str
) -> int | None:
    """Record the event's notice and queue its messages in one transaction; how many were queued, or None
    when the event was planned before (by another replica, or an earlier pass)."""
    async with conn.transaction():
        request = await _request(conn, request_id)
        # An opening first seen once the request was decided is recorded without asking for approvals.
        announce = event != "opened" or request["status"] == "pending"
        rows = await dict_rows(
            conn, "select ops.open_promotion_notice(%s, %s, %s) as id", (request_id, event, announce)
        )
        notice = rows[0]["id"]
        if notice is None:
            return None
        if not announce:
            return 0
        return await _enqueue_all(conn, notice, request, event, now, base_url)


async def _enqueue_all(
    conn: AsyncConnection, notice: int, request: Row, event: str, now: datetime, base_url: str
) -> int:
    msg = message(request, event, base_url)
    severity = SEVERITY.get(event, "info")
    job = f"{request['project']}/{request['job']}"
    users = await notifications.org_users(conn, request["org_id"], request["project_id"])
    approvers = await _approvers(conn, request, [u["user_id"] for u in users])
    if event == "opened":
        wanted = approvers if int(request["gate"].get("required_approvals") or 0) > 0 else set()
    else:
        wanted = approvers | ({request["requested_by_id"]} if request["requested_by_id"] else set())
    by_email = {u["email"].lower(): u for u in users}
    outbox = notifications.EventOutbox(
        {"slack": slack_payload(msg), "webhook": webhook_payload(msg), "email": notifications.email_payload(msg)},
        partial(notifications.enqueue_delivery, conn, ENQUEUE_PROMOTION_DELIVERY, notice),
    )
    queued, named = await outbox.to_targets(
        dict.fromkeys(str(t).strip() for t in request["gate"].get("notify") or [] if str(t).strip()),
        lambda address: by_email.get(address.lower()),
        now,
    )
    wanted.update(user["user_id"] for user in named)
    for user in users:
        if user["user_id"] not in wanted:
            continue
        if not notifications.accepts(notifications.preferences_of(user), severity, job):
            continue
        queued += await outbox.to_member(user, severity, now)
        channels = notifications.channels_of(user)
        # The bell of an opened request is rung by ops.request_promotion itself (in-app before channels).
        if "in_app" in channels and event != "opened":
            rows = await dict_rows(
                conn,
                "select ops.add_promotion_notification(%s, %s, %s, %s, %s, %s) as id",
                (notice, user["user_id"], severity, msg["subject"], msg["summary"],
                 routes.promotion_detail(str(request["id"]))),
            )  # fmt: skip
            queued += 1 if rows[0]["id"] else 0
    return queued


async def plan_due(conn: AsyncConnection, *, now: datetime, base_url: str, limit: int = 50) -> int:
    """The promotion loop's pass over notices: plan every event not planned yet; returns messages queued."""
    queued = 0
    for row in await unplanned_events(conn, limit=limit):
        planned = await plan_event(conn, request_id=row["request_id"], event=row["event"], now=now, base_url=base_url)
        queued += planned or 0
    return queued


async def deliveries_of(conn: AsyncConnection, *, request_id: uuid.UUID) -> list[Row]:
    """The messages queued for a request's events (oldest first)."""
    return await dict_rows(
        conn,
        "select n.event, d.channel, d.target, d.user_id, d.state, d.attempts, d.payload, d.created_at, d.sent_at "
        "from ops.alert_deliveries d join ops.promotion_notices n on n.id = d.promotion_notice_id "
        "where n.request_id = %s order by n.id, d.channel, d.target",
        (request_id,),
    )
