"""The notification bell in every page's header: unread count and recent notifications, pushed live.

The count changes the moment a notification is added or read: ops.notifications NOTIFYs
``lakehouse_notifications`` with the user's id (20261204000500_alerts_ui.sql), the process's one
LISTEN connection (db/notify.py) wakes the watcher, and only then is the user's bell re-read. A
client-side keep-alive (no database work) tells the watcher the page is still open.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room import routes
from control_room.db import notify
from control_room.db.notify import NOTIFICATIONS_CHANNEL
from control_room.db.tables import Notification
from control_room.services import notifications
from control_room.state import formatting
from control_room.state.base import SessionState, SignedIn, as_user
from control_room.state.events import background, exclusive
from control_room.state.rows import BellItem

RECENT = 10
WATCH_WAIT_SECONDS = 5.0
KEEP_ALIVE_MS = 5_000
WATCH_IDLE_SECONDS = 15.0


def bell_item(row: Notification, now: datetime) -> BellItem:
    return BellItem(
        id=str(row.id),
        title=row.title,
        body=row.body,
        severity=row.severity,
        when=formatting.ago((now - row.created_at).total_seconds()),
        unread=row.read_at is None,
        href=routes.incident(str(row.incident_id)) if row.incident_id else routes.ALERTS,
    )


class BellState(SessionState):
    """The signed-in user's unread count and latest notifications."""

    unread: rx.Field[int] = rx.field(0)
    items: rx.Field[list[BellItem]] = rx.field(default_factory=list)
    error: rx.Field[str] = rx.field("")

    _watching: bool = False
    _seen_at: float = 0.0

    @background
    async def start(self) -> AsyncIterator[Any]:
        """When a page mounts the bell: read it once and start listening."""
        async with self:
            self._seen_at = time.monotonic()
        await self._refresh()
        yield BellState.watch

    @background
    async def keep_alive(self, _now: str = "") -> AsyncIterator[Any]:
        """From the browser while the page is open: no database work, only 'still here'."""
        async with self:
            self._seen_at = time.monotonic()
            restart = not self._watching
        if restart:
            yield BellState.watch

    @background
    @exclusive("_watching")
    async def watch(self) -> None:
        """Re-read the bell whenever this user's notifications change, while the page is open."""
        async with self:
            user_id = self._user_id
        if not user_id:
            return

        async def page_open() -> bool:
            async with self:
                return self._user_id == user_id and time.monotonic() - self._seen_at <= WATCH_IDLE_SECONDS

        await notify.watch(
            NOTIFICATIONS_CHANNEL, user_id, wait_s=WATCH_WAIT_SECONDS, still_wanted=page_open, on_notify=self._refresh
        )

    async def _refresh(self) -> None:
        async def read(conn: AsyncConnection, signed: SignedIn) -> tuple[list[Notification], int]:
            user_id = signed.principal.user_id
            rows = await notifications.list_notifications(conn, user_id=user_id, limit=RECENT)
            return rows, await notifications.unread_count(conn, user_id=user_id)

        def show(found: tuple[list[Notification], int]) -> None:
            rows, self.unread = found
            now = datetime.now(UTC)
            self.items = [bell_item(row, now) for row in rows]

        await self._read_shown(read, show, needs_project=False)

    @background
    async def open_item(self, notification_id: str, href: str) -> AsyncIterator[Any]:
        """Mark one notification read and go to its incident."""
        await self._mark([uuid.UUID(notification_id)])
        yield rx.redirect(href)

    @background
    async def mark_all_read(self) -> None:
        await self._mark(None)

    async def _mark(self, ids: list[uuid.UUID] | None) -> None:
        signed = await self.signed_in()
        if signed is None:
            return
        async with as_user(signed.principal) as conn:
            await notifications.mark_read(conn, user_id=signed.principal.user_id, ids=ids)
        await self._refresh()  # the NOTIFY wakes other tabs; this one answers at once
