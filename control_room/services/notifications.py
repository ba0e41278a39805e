"""Who hears about an incident event and how: rule targets, routing owners, users' preferences, the bell.

Planning writes the outbox (ops.alert_deliveries) and in-app notifications in the caller's
transaction, keyed by the event, so a firing and its messages commit together exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from control_room.db.rows import dict_rows, first_model, model_list
from control_room.db.tables import Notification, NotificationPreferences

Row = dict[str, Any]

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
DIGEST_HOUR = 9  # info digests go out at 09:00 in the user's time zone
DIGEST_REASON = "daily digest"  # held_reason of the deliveries a digest gathers (loops/deliveries.py)


# Messages --------------------------------------------------------------------------------------------


def links(base_url: str, incident: Row) -> dict[str, str]:
    """Links to the incident, its run and task in the control room."""
    base = base_url.rstrip("/")
    out = {"incident": f"{base}/alerts?incident={incident['id']}"}
    if incident.get("run_id"):
        out["run"] = f"{base}/runs/{incident['run_id']}"
        if incident.get("task_id"):
            out["task"] = f"{base}/runs/{incident['run_id']}?task={incident['task_id']}"
    return out


def message(incident: Row, event_kind: str, base_url: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The channel-neutral message of one incident event: subject, text and links."""
    verb = {
        "fired": "FIRING",
        "refired": f"FIRING again (x{incident['count']})",
        "escalated": "ESCALATED",
        "resolved": "RESOLVED",
    }.get(event_kind, event_kind.upper())
    subject = f"[{incident['severity'].upper()}] {verb}: {incident['title']}"
    urls = links(base_url, incident)
    lines = [
        incident["title"],
        "",
        incident.get("summary") or "",
        "",
        f"Rule: {incident.get('rule_name', '')} ({incident.get('rule_kind', '')})",
        f"Subject: {incident['subject']}",
        f"Count: {incident['count']}",
    ]
    if detail and detail.get("level"):
        lines.append(f"Escalation level: {detail['level']}")
    lines += ["", *(f"{name.capitalize()}: {url}" for name, url in urls.items())]
    return {
        "subject": subject,
        "text": "\n".join(lines),
        "links": urls,
        "event": event_kind,
        "incident_id": str(incident["id"]),
        "severity": incident["severity"],
        "title": incident["title"],
        "summary": incident.get("summary") or "",
        "count": incident["count"],
        "subject_key": incident["subject"],
    }


def slack_payload(msg: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body (Block Kit) for a message."""
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": f"Open {name}"}, "url": url}
        for name, url in msg["links"].items()
    ]
    return {
        "text": msg["subject"],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": msg["subject"][:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": msg["summary"] or msg["title"]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"subject `{msg['subject_key']}` · count {msg['count']}"}],
            },
            {"type": "actions", "elements": buttons},
        ],
    }


def webhook_payload(msg: dict[str, Any]) -> dict[str, Any]:
    """The generic webhook body (signed by the sender)."""
    return {
        "type": f"incident.{msg['event']}",
        "incident_id": msg["incident_id"],
        "severity": msg["severity"],
        "title": msg["title"],
        "summary": msg["summary"],
        "subject": msg["subject_key"],
        "count": msg["count"],
        "links": msg["links"],
    }


def email_payload(msg: dict[str, Any]) -> dict[str, Any]:
    return {"subject": msg["subject"], "text": msg["text"]}


def digest_payload(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """One e-mail gathering the info messages held for a user's daily digest, oldest first."""
    rule = "-" * 72
    parts = [f"{p['subject']}\n{rule}\n{p['text']}" for p in payloads]
    return {
        "subject": f"[INFO] Daily digest: {len(payloads)} notification(s)",
        "text": f"{len(payloads)} notification(s) held for your daily digest.\n\n" + "\n\n".join(parts),
    }


# Preferences -----------------------------------------------------------------------------------------


def held_until(prefs: Row | None, severity: str, now: datetime) -> tuple[datetime, str | None]:
    """When a personal message may go out under the user's quiet hours and digest choice."""
    if prefs is None:
        return now, None
    tz = ZoneInfo(prefs["timezone"])
    local = now.astimezone(tz)
    if severity == "info" and prefs["digest_info"]:
        due = local.replace(hour=DIGEST_HOUR, minute=0, second=0, microsecond=0)
        if due <= local:
            due += timedelta(days=1)
        return due, DIGEST_REASON
    start, end = prefs["quiet_start"], prefs["quiet_end"]
    if start is None or end is None or (severity == "critical" and prefs["critical_overrides_quiet"]):
        return now, None
    if _in_quiet(local.time(), start, end):
        until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if until <= local:
            until += timedelta(days=1)
        return until, "quiet hours"
    return now, None


def _in_quiet(t: time, start: time, end: time) -> bool:
    return start <= t < end if start <= end else (t >= start or t < end)


def accepts(prefs: Row | None, severity: str, job: str | None) -> bool:
    """Whether the user wants this at all (minimum severity, muted jobs)."""
    if prefs is None:
        return True
    if SEVERITY_RANK[severity] < SEVERITY_RANK[prefs["min_severity"]]:
        return False
    return not (job and job in prefs["muted_jobs"])


async def org_users(conn: AsyncConnection, org_id: uuid.UUID, project_id: uuid.UUID | None = None) -> list[Row]:
    """The org's active members, and the members of ``project_id``, with their preferences (None fields
    when never set)."""
    return await dict_rows(
        conn,
        "select u.id as user_id, u.email, np.channels, np.webhook_url, np.min_severity, np.quiet_start, "
        "np.quiet_end, np.timezone, np.critical_overrides_quiet, np.digest_info, np.subscribed_jobs, "
        "np.subscribed_projects, np.muted_jobs, (np.user_id is not null) as has_prefs "
        "from (select om.user_id from ops.org_members om where om.org_id = %(org)s "
        "      union select pm.user_id from ops.project_members pm where pm.project_id = %(project)s) m "
        "join ops.users u on u.id = m.user_id "
        "left join ops.notification_preferences np on np.org_id = %(org)s and np.user_id = m.user_id "
        "where u.is_active",
        {"org": org_id, "project": project_id},
    )


def preferences_of(user: Row) -> Row | None:
    """A member row of ``org_users`` as their preferences, or None while they have saved none."""
    return user if user["has_prefs"] else None


def channels_of(user: Row) -> list[str]:
    """The channels a member of ``org_users`` is reached on: their choice, else e-mail and in-app."""
    return list(user["channels"]) if user["has_prefs"] else ["email", "in_app"]


# Planning --------------------------------------------------------------------------------------------


# Queues one delivery of an event's message: (channel, target, payload, user_id, not_before, held) -> rows queued.
Enqueue = Callable[[str, str, dict[str, Any], uuid.UUID | None, datetime, str | None], Awaitable[int]]


@dataclass(frozen=True)
class EventOutbox:
    """One event's message on its way out (an incident's or a promotion request's): its payload per channel
    (slack, webhook, email) and how a delivery of it is queued."""

    payloads: dict[str, dict[str, Any]]
    enqueue: Enqueue

    async def to_targets(
        self, targets: Iterable[str], member: Callable[[str], Row | None], now: datetime
    ) -> tuple[int, list[Row]]:
        """Queue the message to the shared channels ``targets`` name (``slack:<channel>``,
        ``webhook:<channel>``, an http(s) URL or an e-mail address); returns how many were queued and the
        members (``member`` of an address) named, whose own preferences decide how they hear of it."""
        queued, named = 0, []
        for target in targets:
            if target.startswith("slack:"):
                queued += await self.enqueue("slack", target[6:].lstrip("#"), self.payloads["slack"], None, now, None)
            elif target.startswith(("webhook:", "http://", "https://")):
                name = target[8:] if target.startswith("webhook:") else target
                queued += await self.enqueue("webhook", name, self.payloads["webhook"], None, now, None)
            elif "@" in target:
                user = member(target)
                if user is not None:
                    named.append(user)
                else:
                    queued += await self.enqueue("email", target, self.payloads["email"], None, now, None)
        return queued, named

    async def to_member(self, user: Row, severity: str, now: datetime) -> int:
        """Queue the message to a member's own e-mail and webhook, held under their quiet hours or digest."""
        when, why = held_until(preferences_of(user), severity, now)
        channels = channels_of(user)
        queued = 0
        if "email" in channels:
            queued += await self.enqueue("email", user["email"], self.payloads["email"], user["user_id"], when, why)
        if "webhook" in channels and user["webhook_url"]:
            queued += await self.enqueue(
                "webhook", user["webhook_url"], self.payloads["webhook"], user["user_id"], when, why
            )
        return queued


async def plan_and_enqueue(
    conn: AsyncConnection,
    *,
    incident: Row,
    event_id: int,
    event_kind: str,
    now: datetime,
    base_url: str,
    targets: list[str],
    detail: dict[str, Any] | None = None,
) -> int:
    """Write the outbox rows and in-app notifications of one incident event; returns how many were queued.

    ``targets`` are the rule's notify entries and routing owners for this event: an e-mail address
    (a member's address goes through that member's preferences), ``slack:<channel>``,
    ``webhook:<channel>`` or an http(s) URL. Members subscribed to the job or project, and the
    bell of every member who keeps in-app on, are added.
    """
    msg = message(incident, event_kind, base_url, detail)
    users = await org_users(conn, incident["org_id"], incident.get("project_id"))
    by_email = {u["email"].lower(): u for u in users}
    severity, job = incident["severity"], incident.get("job")
    outbox = EventOutbox(
        {"slack": slack_payload(msg), "webhook": webhook_payload(msg), "email": email_payload(msg)},
        partial(enqueue_delivery, conn, ENQUEUE_EVENT_DELIVERY, event_id),
    )
    queued, named = await outbox.to_targets(
        dict.fromkeys(t.strip() for t in targets if t and t.strip()),
        lambda address: by_email.get(address.lower().removeprefix("user:")),
        now,
    )
    personal: dict[uuid.UUID, Row] = {user["user_id"]: user for user in named}
    for user in users:
        prefs = preferences_of(user)
        if prefs and (
            job in (prefs["subscribed_jobs"] or [])
            or incident.get("project_id") in (prefs["subscribed_projects"] or [])
        ):
            personal.setdefault(user["user_id"], user)
    for user in personal.values():
        if accepts(preferences_of(user), severity, job):
            queued += await outbox.to_member(user, severity, now)
    for user in users:
        if "in_app" in channels_of(user) and accepts(preferences_of(user), severity, job):
            rows = await dict_rows(
                conn,
                "select ops.add_notification(%s, %s, %s, %s, %s) as id",
                (user["user_id"], event_id, msg["subject"], msg["summary"], msg["links"]["incident"]),
            )
            queued += 1 if rows and rows[0]["id"] else 0
    return queued


# How an incident event's delivery is queued (ops.enqueue_delivery's arguments: those of ``enqueue_delivery``).
ENQUEUE_EVENT_DELIVERY = "select ops.enqueue_delivery(%s, %s, %s, %s, %s, %s, %s) as id"


async def enqueue_delivery(
    conn: AsyncConnection,
    statement: str,
    source: int,
    channel: str,
    target: str,
    payload: dict[str, Any],
    user_id: uuid.UUID | None,
    not_before: datetime,
    held: str | None,
) -> int:
    """Queue one delivery in the outbox with ``statement`` (the SQL function of the message's source: an
    incident event, a promotion notice); 1 when a row was queued, 0 when the function queued none."""
    rows = await dict_rows(conn, statement, (source, channel, target, Jsonb(payload), user_id, not_before, held))
    return 1 if rows and rows[0]["id"] else 0


# In-app notifications and preferences ------------------------------------------------------------


async def list_notifications(
    conn: AsyncConnection, *, user_id: uuid.UUID, unread_only: bool = False, limit: int = 50
) -> list[Notification]:
    """A user's notifications, newest first."""
    return await model_list(
        conn,
        Notification,
        "select * from ops.notifications where user_id = %s and (not %s or read_at is null) "
        "order by created_at desc limit %s",
        (user_id, unread_only, limit),
    )


async def unread_count(conn: AsyncConnection, *, user_id: uuid.UUID) -> int:
    rows = await dict_rows(
        conn, "select count(*) as n from ops.notifications where user_id = %s and read_at is null", (user_id,)
    )
    return int(rows[0]["n"])


async def mark_read(conn: AsyncConnection, *, user_id: uuid.UUID, ids: list[uuid.UUID] | None) -> int:
    rows = await dict_rows(conn, "select ops.mark_notifications_read(%s, %s) as n", (user_id, ids))
    return int(rows[0]["n"])


def default_preferences(org_id: uuid.UUID, user_id: uuid.UUID) -> NotificationPreferences:
    """What applies to a user who never saved preferences: the table's column defaults."""
    return NotificationPreferences.model_validate(
        {"org_id": org_id, "user_id": user_id, "channels": ["email", "in_app"], "webhook_url": None,
         "min_severity": "info", "quiet_start": None, "quiet_end": None, "timezone": "UTC",
         "critical_overrides_quiet": True, "digest_info": False, "subscribed_jobs": [], "subscribed_projects": [],
         "muted_jobs": [], "updated_at": datetime.now(UTC)}
    )  # fmt: skip


async def get_preferences(
    conn: AsyncConnection, *, org_id: uuid.UUID, user_id: uuid.UUID
) -> NotificationPreferences | None:
    """A user's saved preferences in an org (None: never saved, the defaults apply)."""
    return await first_model(
        conn,
        NotificationPreferences,
        "select * from ops.notification_preferences where org_id = %s and user_id = %s",
        (org_id, user_id),
    )


async def put_preferences(
    conn: AsyncConnection, *, org_id: uuid.UUID, user_id: uuid.UUID, actor_id: uuid.UUID, prefs: dict[str, Any]
) -> NotificationPreferences:
    """Write a user's own preferences (refused for anyone else, admins included)."""
    row = await first_model(
        conn,
        NotificationPreferences,
        "select * from ops.put_notification_preferences(%s, %s, %s, %s)",
        (org_id, user_id, actor_id, Jsonb(prefs)),
    )
    assert row is not None  # the function returns the row it wrote (or raises)
    return row


async def known_jobs(conn: AsyncConnection, *, org_id: uuid.UUID, days: int = 30) -> list[str]:
    """Job names of an org ("<project>/<template or run name>") to subscribe to or mute: its templates and
    what ran lately."""
    rows = await dict_rows(
        conn,
        "select p.slug || '/' || jt.name as job from ops.job_templates jt join ops.projects p on p.id = jt.project_id "
        "where jt.org_id = %(org)s and jt.archived_at is null "
        "union select p.slug || '/' || coalesce(jt.name, r.name) from ops.runs r "
        "join ops.projects p on p.id = r.project_id left join ops.job_templates jt on jt.id = r.template_id "
        "where r.org_id = %(org)s and r.created_at > now() - make_interval(days => %(days)s) "
        "order by 1 limit 500",
        {"org": org_id, "days": days},
    )
    return [row["job"] for row in rows]
