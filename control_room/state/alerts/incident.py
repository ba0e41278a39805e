"""One incident: its header, the timeline of what happened and of every message sent; ack, snooze, resolve."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room.services import alerts
from control_room.services.errors import Invalid
from control_room.state.alerts.incidents import IncidentsState
from control_room.state.alerts.rows import incident_row, timeline_rows
from control_room.state.base import SessionState, SignedIn, as_user, problem_text
from control_room.state.events import background, handler, page_url, setter
from control_room.state.rows import IncidentRow, TimelineRow

SNOOZE_CHOICES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(days=1)}


def snooze_until(choice: str, custom: str, now: datetime) -> datetime:
    """The end of a snooze: a preset (1h, 4h, 24h) or a time typed as ``YYYY-MM-DDTHH:MM`` (UTC)."""
    if choice in SNOOZE_CHOICES:
        return now + SNOOZE_CHOICES[choice]
    try:
        until = datetime.fromisoformat(custom)
    except ValueError as exc:
        raise Invalid("snooze until needs a time such as 2026-12-05T08:00 (UTC)", field="until") from exc
    return until if until.tzinfo else until.replace(tzinfo=UTC)


class IncidentState(SessionState):
    """The incident dialog."""

    is_open: rx.Field[bool] = rx.field(False)
    incident: rx.Field[IncidentRow] = rx.field(default_factory=IncidentRow)
    timeline: rx.Field[list[TimelineRow]] = rx.field(default_factory=list)
    can_act: rx.Field[bool] = rx.field(False)
    snooze_choice: rx.Field[str] = rx.field("1h")
    snooze_custom: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    is_acting: rx.Field[bool] = rx.field(False)

    @background
    async def open_from_url(self) -> None:
        """Open the incident named by ``?incident=`` (the link of notifications and messages)."""
        async with self:
            wanted = page_url(self).query_parameters.get("incident", "")
        if wanted:
            await self._load(wanted)

    @background
    async def open(self, incident_id: str) -> None:
        async with self:
            self.error = ""
        await self._load(incident_id)

    async def _load(self, incident_id: str) -> None:
        async def read(conn: AsyncConnection, _: SignedIn) -> tuple[alerts.Row, alerts.IncidentTimeline] | None:
            row = await alerts.incident(conn, uuid.UUID(incident_id))
            return (row, await alerts.incident_timeline(conn, uuid.UUID(incident_id))) if row else None

        reading = await self._read_as_user(read, needs_project=False)
        signed = reading.signed
        if signed is None:
            return
        async with self:
            self.is_open = True
            if reading.value is None:
                self.error = reading.error or f"Incident {incident_id} does not exist or is not visible to you."
                return
            row, found = reading.value
            self.incident = incident_row(row)
            self.timeline = timeline_rows(found.events, found.deliveries)
            self.can_act = signed.is_org_admin or signed.can_operate(row["project_id"])

    @handler
    def set_open(self, value: bool) -> None:
        self.is_open = value

    set_snooze_choice = setter("snooze_choice")
    set_snooze_custom = setter("snooze_custom", longest=40)

    @background
    async def ack(self) -> AsyncIterator[Any]:
        async for event in self._act("ack"):
            yield event

    @background
    async def snooze(self) -> AsyncIterator[Any]:
        async for event in self._act("snooze"):
            yield event

    @background
    async def resolve(self) -> AsyncIterator[Any]:
        async for event in self._act("resolve"):
            yield event

    async def _act(self, action: str) -> AsyncIterator[Any]:
        """Ack, snooze or resolve as the user (operators; checked again in SQL), then reload."""
        async with self:
            if self.is_acting or not self.incident.id:
                return
            self.is_acting = True
            incident_id, choice, custom = self.incident.id, self.snooze_choice, self.snooze_custom
        error = ""
        try:
            signed = await self.signed_in()
            if signed is None:
                raise Invalid("your session ended: sign in again")
            now = datetime.now(UTC)
            until = snooze_until(choice, custom, now) if action == "snooze" else None
            async with as_user(signed.principal) as conn:
                await alerts.act(
                    conn,
                    incident_id=uuid.UUID(incident_id),
                    action=action,
                    user_id=signed.principal.user_id,
                    actor=signed.principal.email,
                    until=until,
                    at=now,
                )
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            self.is_acting, self.error = False, error
        await self._load(incident_id)
        yield IncidentsState.load
