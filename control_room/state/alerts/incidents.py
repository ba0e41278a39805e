"""The incidents table of the Alerts page: filters (state, severity, text), keyset pages, live refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room import routes
from control_room.services import alerts
from control_room.state.alerts.rows import IncidentRow, incident_row
from control_room.state.base import ALL, SessionState, as_user, problem_text
from control_room.state.events import background, handler
from control_room.state.paging import KeysetPages

PAGE_SIZE = 25
REFRESH_MS = 5_000


class IncidentsState(KeysetPages, SessionState):
    """Incidents the user may read, most recently fired first."""

    rows: rx.Field[list[IncidentRow]] = rx.field(default_factory=list)
    state_filter: rx.Field[str] = rx.field("open")
    severity: rx.Field[str] = rx.field(ALL)
    text: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)

    _generation: int = 0

    def _reload(self) -> Any:
        return IncidentsState.load

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """The first page (every state when the URL names one incident: it may be resolved already)."""
        async with self:
            self._reset_pages()
            if self.router.url.query_parameters.get("incident", ""):
                self.state_filter = ALL
        async for event in self._list():
            yield event

    @background
    async def load(self, _tick: str = "") -> AsyncIterator[Any]:
        async for event in self._list():
            yield event

    async def _list(self) -> AsyncIterator[Any]:
        signed = await self.signed_in()
        if signed is None:
            yield rx.redirect(routes.login(next_path=await self.current_path()))
            return
        async with self:
            self._generation += 1
            generation = self._generation
            cursor = self._page_cursor()
            query = alerts.IncidentsQuery(
                states=() if self.state_filter == ALL else (self.state_filter,),
                severity=None if self.severity == ALL else self.severity,
                text=self.text.strip() or None,
            )
        rows: list[IncidentRow] = []
        next_cursor: str | None = None
        error = ""
        try:
            async with as_user(signed.principal) as conn:
                found, next_cursor = await alerts.incidents_page(conn, query=query, cursor=cursor, limit=PAGE_SIZE)
            rows = [incident_row(row) for row in found]
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            if generation != self._generation:
                return
            self.rows, self.error, self.loaded = rows, error, True
            self._record_next(next_cursor)

    @handler
    def set_state_filter(self, value: str) -> Any:
        self.state_filter = value
        return self._first_page()

    @handler
    def set_severity(self, value: str) -> Any:
        self.severity = value
        return self._first_page()

    @handler
    def set_text(self, value: str) -> Any:
        self.text = value[:200]
        return self._first_page()
