"""Overview page: runs of the selected project in the last 24 hours, by status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx

from control_room import routes
from control_room.services import runs
from control_room.state.base import SessionState, as_user, problem_text
from control_room.state.events import background


class OverviewState(SessionState):
    """Counts per status for the selected project (one indexed query)."""

    counts: rx.Field[dict[str, int]] = rx.field(default_factory=dict)
    error: rx.Field[str] = rx.field("")
    is_loading: rx.Field[bool] = rx.field(False)

    @background
    async def load(self) -> AsyncIterator[Any]:
        """Check the session, then count the project's runs of the last day."""
        signed = await self.signed_in()
        if signed is None:
            yield rx.redirect(routes.login(next_path=await self.current_path()))
            return
        if signed.project_id is None:
            return
        async with self:
            if self.is_loading:
                return
            self.is_loading = True
        try:
            async with as_user(signed.principal) as conn:
                counts = await runs.status_counts(
                    conn, project_id=signed.project_id, since=datetime.now(UTC) - timedelta(hours=24)
                )
            error = ""
        except Exception as exc:
            counts, error = {}, problem_text(exc)
        async with self:
            self.counts = counts
            self.error = error
            self.is_loading = False


class ComingLaterState(SessionState):
    """Placeholder pages: only the session check and the feature's name."""

    @rx.var
    def feature_title(self) -> str:
        """The placeholder's feature, from the URL."""
        feature = str(getattr(self, "feature", ""))
        return routes.LATER_FEATURES.get(feature, "This feature")

    @background
    async def check(self) -> AsyncIterator[Any]:
        """Send the browser to sign in when nobody is."""
        if await self.signed_in() is None:
            yield rx.redirect(routes.login(next_path=await self.current_path()))
