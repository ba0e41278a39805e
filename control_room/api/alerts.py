"""Alerts for clients: rules (org/project admins), incidents (ack, snooze, resolve), notifications, preferences."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from typing import Any, Literal

from fastapi import APIRouter, Response
from psycopg import AsyncConnection
from pydantic import BaseModel, Field, StrictBool

from control_room.api.deps import User, UserConnection
from control_room.api.models import Int, IsoDatetime, Strict
from control_room.db.tables import AlertRule, NotificationPreferences
from control_room.services import alerts, notifications
from control_room.services.auth import UserPrincipal
from control_room.services.errors import Invalid, NotFound

router = APIRouter(tags=["alerts"])

Kind = Literal[
    "run_failed",
    "task_failed",
    "run_duration",
    "queue_wait",
    "cap_breach",
    "executor_offline",
    "sla",
    "schedule_missed",
    "dataset_freshness",
    "event_match",
]
Severity = Literal["info", "warning", "critical"]


# Wire models ------------------------------------------------------------------------------------------


class AlertRuleFields(Strict):
    """The settable fields of a rule; omitted fields keep their value (or the default when creating)."""

    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind: Kind | None = None
    project_id: uuid.UUID | None = None
    match_environment: Literal["dev", "staging", "prod"] | None = None
    match_template_id: uuid.UUID | None = None
    match_pool: str | None = None
    threshold: Int | None = Field(default=None, ge=1)
    window_s: Int | None = Field(default=None, ge=1)
    factor: float | None = Field(default=None, gt=0, description="run_duration: fire over factor x the job's p95.")
    baseline_runs: Int | None = Field(default=None, ge=2, le=1000)
    sla_time: time | None = Field(default=None, description="sla: local time of day the job must have succeeded by.")
    sla_timezone: str | None = None
    cap_percent: Int | None = Field(default=None, ge=1, le=1000)
    event_type: str | None = None
    event_level: Literal["debug", "info", "warning", "error"] | None = None
    event_attributes: dict[str, Any] | None = None
    dataset_name: str | None = None
    severity: Severity | None = None
    notify: list[str] | None = Field(default=None, description="E-mail addresses, slack:<channel>, webhook:<channel>.")
    escalate: StrictBool | None = None
    escalate_after_s: Int | None = Field(default=None, ge=1)
    enabled: StrictBool | None = None
    description: str | None = None


class AlertRuleCreate(AlertRuleFields):
    org_id: uuid.UUID
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind: Kind


class AlertRulePublic(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    kind: str
    project_id: uuid.UUID | None
    match_environment: str | None
    match_template_id: uuid.UUID | None
    match_pool: str | None
    threshold: int | None
    window_s: int | None
    factor: float | None
    baseline_runs: int
    sla_time: time | None
    sla_timezone: str
    cap_percent: int | None
    event_type: str | None
    event_level: str | None
    event_attributes: dict[str, Any]
    dataset_name: str | None
    severity: str
    notify: list[str]
    escalate: bool
    escalate_after_s: int
    enabled: bool
    description: str
    last_fired_at: datetime | None = None
    open_incidents: int = 0
    incidents: int = 0


class AlertRuleList(BaseModel):
    items: list[AlertRulePublic]


class IncidentPublic(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: str
    rule_kind: str
    subject: str
    job: str | None
    project_id: uuid.UUID | None
    run_id: uuid.UUID | None
    task_id: uuid.UUID | None
    severity: str
    state: str = Field(description="open | acked | resolved")
    title: str
    summary: str
    count: int
    first_fired_at: datetime
    last_fired_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    snoozed_until: datetime | None
    resolved_at: datetime | None
    escalation_level: int


class IncidentList(BaseModel):
    items: list[IncidentPublic]


class IncidentEvent(BaseModel):
    id: int
    kind: str
    at: datetime
    actor: str
    detail: dict[str, Any]


class DeliveryPublic(BaseModel):
    id: uuid.UUID
    event_id: int
    channel: str
    target: str
    state: str = Field(description="pending | sent | dead")
    attempts: int
    last_error: str | None
    held_reason: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime


class IncidentDetail(IncidentPublic):
    events: list[IncidentEvent]
    deliveries: list[DeliveryPublic]


class SnoozeRequest(Strict):
    until: IsoDatetime


class NotificationPublic(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    incident_id: uuid.UUID | None
    severity: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None


class NotificationList(BaseModel):
    items: list[NotificationPublic]
    unread: int


class MarkRead(Strict):
    ids: list[uuid.UUID] | None = Field(default=None, description="Omit to mark all read.")


class MarkedRead(BaseModel):
    marked: int


class Preferences(Strict):
    channels: list[Literal["email", "in_app", "webhook"]] = ["email", "in_app"]
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    min_severity: Severity = "info"
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"
    critical_overrides_quiet: StrictBool = True
    digest_info: StrictBool = False
    subscribed_jobs: list[str] = []
    subscribed_projects: list[uuid.UUID] = []
    muted_jobs: list[str] = []


class MuteRequest(Strict):
    org_id: uuid.UUID
    job: str = Field(min_length=1, max_length=500, description='The job as incidents name it: "<project>/<job name>".')
    until: IsoDatetime | None = Field(default=None, description="Omit to mute until unmuted.")


class MutePublic(BaseModel):
    org_id: uuid.UUID
    job: str
    until: datetime | None
    muted_by: str
    created_at: datetime


class MuteList(BaseModel):
    items: list[MutePublic]


class PreferencesPublic(Preferences):
    org_id: uuid.UUID
    user_id: uuid.UUID


# Rules ------------------------------------------------------------------------------------------------


@router.get("/alerts/rules", operation_id="listAlertRules", response_model=AlertRuleList)
async def list_rules(conn: UserConnection) -> dict[str, Any]:
    """Alert rules the caller may read, with last fired time and incident counts."""
    return {"items": await alerts.list_rules(conn)}


@router.post("/alerts/rules", operation_id="createAlertRule", response_model=AlertRulePublic, status_code=201)
async def create_rule(body: AlertRuleCreate, conn: UserConnection) -> AlertRule:
    """Create a rule (org admins; project admins for their project's rules)."""
    fields = body.model_dump(exclude_none=True, exclude={"org_id"}, mode="json")
    return await alerts.create_rule(conn, org_id=body.org_id, fields=fields)


@router.patch("/alerts/rules/{rule_id}", operation_id="updateAlertRule", response_model=AlertRulePublic)
async def update_rule(rule_id: uuid.UUID, body: AlertRuleFields, conn: UserConnection) -> AlertRule:
    """Change some fields of a rule (its admins)."""
    row = await alerts.update_rule(conn, rule_id=rule_id, fields=body.model_dump(exclude_unset=True, mode="json"))
    if row is None:
        raise NotFound(f"alert rule {rule_id} does not exist or you may not change it (org/project admins may)")
    return row


@router.delete("/alerts/rules/{rule_id}", operation_id="deleteAlertRule", status_code=204)
async def delete_rule(rule_id: uuid.UUID, conn: UserConnection) -> Response:
    """Delete a rule and its incidents (its admins)."""
    deleted = await alerts.delete_rule(conn, rule_id=rule_id)
    if not deleted:
        raise NotFound(f"alert rule {rule_id} does not exist or you may not delete it (org/project admins may)")
    return Response(status_code=204)


# Incidents --------------------------------------------------------------------------------------------


@router.get("/alerts/incidents", operation_id="listIncidents", response_model=IncidentList)
async def list_incidents(
    conn: UserConnection, state: Literal["open", "acked", "resolved"] | None = None, limit: Int = 100
) -> dict[str, Any]:
    """Incidents the caller may read, most recently fired first."""
    return {"items": await alerts.list_incidents(conn, state=state, limit=max(1, min(limit, 500)))}


async def _detail(conn: Any, incident_id: uuid.UUID) -> dict[str, Any]:
    row = await alerts.incident(conn, incident_id)
    if row is None:
        raise NotFound(f"incident {incident_id} does not exist or is not visible to you")
    timeline = await alerts.incident_timeline(conn, incident_id)
    return {**row, "events": timeline.events, "deliveries": timeline.deliveries}


@router.get("/alerts/incidents/{incident_id}", operation_id="getIncident", response_model=IncidentDetail)
async def get_incident(incident_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """An incident with its timeline (fired, escalated, acked, ...) and its deliveries log."""
    return await _detail(conn, incident_id)


async def _act(
    conn: AsyncConnection, incident_id: uuid.UUID, action: str, user: UserPrincipal, until: datetime | None = None
) -> dict[str, Any]:
    await _detail(conn, incident_id)  # 404 before 403 for incidents the caller cannot see
    await alerts.act(
        conn,
        incident_id=incident_id,
        action=action,
        user_id=user.user_id,
        actor=user.email,
        until=until,
        at=datetime.now(UTC),
    )
    return await _detail(conn, incident_id)


@router.post("/alerts/incidents/{incident_id}/ack", operation_id="ackIncident", response_model=IncidentDetail)
async def ack_incident(incident_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Acknowledge (operators): stops escalation."""
    return await _act(conn, incident_id, "ack", user)


@router.post("/alerts/incidents/{incident_id}/snooze", operation_id="snoozeIncident", response_model=IncidentDetail)
async def snooze_incident(
    incident_id: uuid.UUID, body: SnoozeRequest, user: User, conn: UserConnection
) -> dict[str, Any]:
    """Snooze until a time (operators): no messages and no escalation before then."""
    return await _act(conn, incident_id, "snooze", user, until=body.until)


@router.post("/alerts/incidents/{incident_id}/resolve", operation_id="resolveIncident", response_model=IncidentDetail)
async def resolve_incident(incident_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Resolve by hand (operators)."""
    return await _act(conn, incident_id, "resolve", user)


# Job mutes -------------------------------------------------------------------------------------------


@router.get("/alerts/mutes", operation_id="listJobMutes", response_model=MuteList)
async def list_mutes(conn: UserConnection) -> dict[str, Any]:
    """Jobs muted now in the orgs the caller belongs to."""
    return {"items": await alerts.mutes(conn, now=datetime.now(UTC))}


@router.post("/alerts/mutes", operation_id="muteJob", response_model=MutePublic)
async def mute_job(body: MuteRequest, user: User, conn: UserConnection) -> dict[str, Any]:
    """Mute a job for the whole org (operators): its incidents still open and count, nobody is told."""
    await alerts.set_mute(
        conn, org_id=body.org_id, job=body.job, mute=True, until=body.until, user_id=user.user_id, actor=user.email
    )
    found = [m for m in await alerts.mutes(conn, org_ids=[body.org_id], now=datetime.now(UTC)) if m["job"] == body.job]
    if not found:
        raise Invalid("until must be in the future", field="until")
    return found[0]


@router.delete("/alerts/mutes", operation_id="unmuteJob", status_code=204)
async def unmute_job(org_id: uuid.UUID, job: str, user: User, conn: UserConnection) -> Response:
    """Unmute a job (operators)."""
    await alerts.set_mute(conn, org_id=org_id, job=job, mute=False, until=None, user_id=user.user_id, actor=user.email)
    return Response(status_code=204)


# Notifications and preferences -----------------------------------------------------------------------


@router.get("/notifications", operation_id="listNotifications", response_model=NotificationList)
async def list_notifications(user: User, conn: UserConnection, unread: bool = False) -> dict[str, Any]:
    """The caller's in-app notifications (the bell), newest first, with the unread count."""
    items = await notifications.list_notifications(conn, user_id=user.user_id, unread_only=unread)
    return {"items": items, "unread": await notifications.unread_count(conn, user_id=user.user_id)}


@router.post("/notifications/read", operation_id="markNotificationsRead", response_model=MarkedRead)
async def mark_read(body: MarkRead, user: User, conn: UserConnection) -> dict[str, Any]:
    """Mark some (or all) of the caller's notifications read."""
    return {"marked": await notifications.mark_read(conn, user_id=user.user_id, ids=body.ids)}


@router.get("/notifications/preferences", operation_id="getNotificationPreferences", response_model=PreferencesPublic)
async def get_preferences(org_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """The caller's preferences in an org (the defaults when never set)."""
    row = await notifications.get_preferences(conn, org_id=org_id, user_id=user.user_id)
    return _public_prefs(row or notifications.default_preferences(org_id, user.user_id))


@router.put("/notifications/preferences", operation_id="putNotificationPreferences", response_model=PreferencesPublic)
async def put_preferences(org_id: uuid.UUID, body: Preferences, user: User, conn: UserConnection) -> dict[str, Any]:
    """Replace the caller's own preferences in an org (nobody else can change them)."""
    row = await notifications.put_preferences(
        conn, org_id=org_id, user_id=user.user_id, actor_id=user.user_id, prefs=body.model_dump(mode="json")
    )
    return _public_prefs(row)


def _public_prefs(row: NotificationPreferences) -> dict[str, Any]:
    return row.model_dump(include=set(PreferencesPublic.model_fields))
