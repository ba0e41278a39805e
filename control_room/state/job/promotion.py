"""A job page's promotion card: the version each environment runs (and the gate into it, the pending request),
and the "Request promotion" dialog (operators; the SQL checks the role and the gate)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room import routes
from control_room.services import promotions
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, handler, page_id, setter
from control_room.state.promotions import pipeline_row
from control_room.state.rows import StageCell


class JobPromotionState(SessionState):
    """Versions per environment of the open job, and the request dialog."""

    stages: rx.Field[list[StageCell]] = rx.field(default_factory=list)
    versions: rx.Field[list[str]] = rx.field(default_factory=list)
    dialog_open: rx.Field[bool] = rx.field(False)
    version: rx.Field[str] = rx.field("")
    target: rx.Field[str] = rx.field("staging")
    comment: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")

    @background
    async def load(self) -> None:
        """The job's version per environment (and the pending requests into them)."""
        signed = await self.signed_in()
        async with self:
            job_id = page_id(self)
        if signed is None or job_id is None or signed.project_id is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                rows = await promotions.pipeline(conn, project_id=signed.project_id)
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        job = next((row for row in rows if row["template_id"] == job_id), None)
        async with self:
            if job is None:
                self.stages, self.versions = [], []
                return
            self.stages = pipeline_row(job).cells
            self.versions = [str(v) for v in range(job["latest"] or 0, 0, -1)]
            if self.version not in self.versions:
                self.version = self.versions[0] if self.versions else ""

    @handler
    def tick(self, _value: str) -> Any:
        return JobPromotionState.load

    @handler
    def open_dialog(self) -> None:
        self.dialog_open, self.error, self.comment = True, "", ""

    set_dialog_open = setter("dialog_open")
    set_version = setter("version")
    set_target = setter("target")
    set_comment = setter("comment", longest=2000)

    @signed_in_event
    async def submit(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Open the request as the signed-in person, then show its page (checks and approvers)."""
        async with self:
            job_id = page_id(self)
            version, target, comment = self.version, self.target, self.comment
        if job_id is None:
            return

        async def work() -> dict[str, Any]:
            async with as_user(signed.principal) as conn:
                return await promotions.request_promotion(
                    conn, template_id=job_id, version=int(version or 0), to_environment=target, comment=comment
                )

        request = await self._dialog_sent(work, error="error", dialog="dialog_open")
        if request is None:
            return
        yield rx.redirect(routes.promotion_detail(str(request["id"])))
