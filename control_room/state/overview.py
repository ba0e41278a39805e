"""Overview page: runs of the selected project in the last 24 hours, by status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import reflex as rx

from control_room import routes
from control_room.services import runs
from control_room.state.base import ALL, SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import page_tail


class OverviewState(SessionState):
    """Counts per status for the selected project and environment (one indexed query), kept live."""

    counts: rx.Field[dict[str, int]] = rx.field(default_factory=dict)
    error: rx.Field[str] = rx.field("")
    is_loading: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")

    @rx.var
    def scope_label(self) -> str:
        """Which runs the cards count: the environment chosen in the switcher, or all of them."""
        return "all environments" if self.environment == ALL else f"the {self.environment} environment"

    @signed_in_event
    async def tick(self, signed: SignedIn, _now: str = "") -> None:
        """Live refresh while the page is open (the same count again)."""
        await self._count(signed)

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        """Count the project's runs of the last day."""
        await self._count(signed)

    async def _count(self, signed: SignedIn) -> None:
        if signed.project_id is None:
            return
        async with self:
            if self.is_loading:
                return
            self.is_loading = True
        try:
            async with as_user(signed.principal) as conn:
                counts = await runs.status_counts(
                    conn,
                    project_id=signed.project_id,
                    since=datetime.now(UTC) - timedelta(hours=24),
                    environment=signed.environment,
                )
            error = ""
        except Exception as exc:
            counts, error = {}, problem_text(exc)
        async with self:
            self.counts = counts
            self.error = error
            self.is_loading = False
            self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")


class ComingLaterState(SessionState):
    """Placeholder pages: the session check and the feature's name, read from the address on load."""

    feature_title: rx.Field[str] = rx.field("")
    is_known: rx.Field[bool] = rx.field(True)  # False: the address names no coming feature (the app's 404)

    @signed_in_event
    async def check(self, _signed: SignedIn) -> None:
        """Send the browser to sign in when nobody is; else name the feature of ``/later/<feature>``."""
        async with self:
            feature = page_tail(self)
            self.feature_title = routes.LATER_FEATURES.get(feature, "")
            self.is_known = feature in routes.LATER_FEATURES
