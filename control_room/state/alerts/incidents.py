"""The incidents table of the Alerts page: filters (state, severity, text), keyset pages, live refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room.services import alerts
from control_room.services.pagination import Page
from control_room.state.alerts.rows import incident_row
from control_room.state.base import ALL, SessionState, SignedIn
from control_room.state.events import background, page_url
from control_room.state.paging import KeysetPages, filter_setter
from control_room.state.rows import IncidentRow

PAGE_SIZE = 25
REFRESH_MS = 5_000


class IncidentsState(KeysetPages, SessionState):
    """Incidents the user may read, most recently fired first."""

    rows: rx.Field[list[IncidentRow]] = rx.field(default_factory=list)
    state_filter: rx.Field[str] = rx.field("open")
    severity: rx.Field[str] = rx.field(ALL)
    text: rx.Field[str] = rx.field("")

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """The first page (every state when the URL names one incident: it may be resolved already)."""
        async with self:
            self._reset_pages()
            if page_url(self).query_parameters.get("incident", ""):
                self.state_filter = ALL
        async for event in self._list():
            yield event

    async def _list(self) -> AsyncIterator[Any]:
        async with self:
            query = alerts.IncidentsQuery(
                states=() if self.state_filter == ALL else (self.state_filter,),
                severity=None if self.severity == ALL else self.severity,
                text=self.text.strip() or None,
            )

        async def read(conn: AsyncConnection, _: SignedIn, cursor: str | None) -> Page:
            return await alerts.incidents_page(conn, query=query, cursor=cursor, limit=PAGE_SIZE)

        def show(found: list[dict[str, Any]]) -> None:
            self.rows = [incident_row(row) for row in found]

        async for event in self._load_page(read, show, needs_project=False):
            yield event

    set_state_filter = filter_setter("state_filter")
    set_severity = filter_setter("severity")
    set_text = filter_setter("text", longest=200)
