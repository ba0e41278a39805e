"""Control-plane health as the UI shows it (schema version or why the database is not usable)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import reflex as rx

from control_room.services.health import check_database
from control_room.state.events import background, exclusive


class HealthState(rx.State):
    """Loaded on page load by a background event; the state lock is held only to assign."""

    database: str = "checking"  # until the first check answers: "ok", or what is wrong
    schema_version: str = ""
    detail: str = ""
    is_loading: bool = False

    @background
    @exclusive("is_loading")
    async def load_health(self) -> AsyncIterator[None]:
        """Run the health check outside the state lock, then store its outcome."""
        yield
        health = await check_database()
        async with self:
            self.database = health.database
            self.schema_version = health.schema_version or ""
            self.detail = health.detail or ""
