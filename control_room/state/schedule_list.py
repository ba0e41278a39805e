"""The Jobs page's schedules view: every schedule of the project with its job, cron and zone, state, next
fire and latest fire's outcome (editing happens on the job's page)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.services import schedules
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import handler
from control_room.state.job.rows import schedule_row
from control_room.state.rows import ScheduleRow

VIEWS = ("jobs", "schedules")


class ScheduleListState(SessionState):
    """Which view the Jobs page shows, and the project's schedules."""

    view: rx.Field[str] = rx.field("jobs")
    schedule_rows: rx.Field[list[ScheduleRow]] = rx.field(default_factory=list)
    schedules_error: rx.Field[str] = rx.field("")

    @handler
    def set_view(self, view: str | list[str]) -> Any:
        """Jobs or schedules (the schedules are read when shown)."""
        self.view = view if isinstance(view, str) and view in VIEWS else "jobs"
        return ScheduleListState.load_schedules if self.view == "schedules" else None

    @signed_in_event
    async def load_schedules(self, signed: SignedIn) -> None:
        """The selected project's schedules."""
        rows: list[ScheduleRow] = []
        error = ""
        try:
            async with as_user(signed.principal) as conn:
                found = await schedules.list_schedules(conn, project_id=signed.project_id)
            rows = [schedule_row(s) for s in found]
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            self.schedule_rows, self.schedules_error = rows, error
