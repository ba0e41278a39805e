"""Executor registry: state from heartbeat age, load, capacity and version; drain/undrain and token
revoke for org admins; running tasks per pool over the last hour."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import reflex as rx
from psycopg import AsyncConnection

from control_room.components.figures import pool_load_figure
from control_room.services import executors
from control_room.state import formatting
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, handler, setter
from control_room.state.rows import ExecutorRow

# The chart is recomputed at most this often (it reads the last hour of attempts).
CHART_EVERY_SECONDS = 30.0


def executor_row(row: dict[str, Any]) -> ExecutorRow:
    """The table row of an executor as ``executors.list_executors`` returns it."""
    capacity = int(row["max_concurrency"])
    running = int(row["running"])
    return ExecutorRow(
        id=str(row["id"]),
        name=row["name"],
        hostname=row["hostname"] or "",
        pool=row["pool"],
        state=row["state"],
        engines=list(row["engines"]),
        labels=list(row["labels"]),
        running=running,
        capacity=capacity,
        load_percent=min(100, round(100 * running / capacity)) if capacity else 0,
        version=row["version"] or "",
        last_heartbeat=formatting.ago(row["heartbeat_age_s"]),
        drain_requested=bool(row["drain_requested"]),
    )


class ExecutorsState(SessionState):
    """The registry table, its summary counts and the pool chart; refreshed every few seconds."""

    rows: rx.Field[list[ExecutorRow]] = rx.field(default_factory=list)
    counts: rx.Field[dict[str, int]] = rx.field(default_factory=dict)
    running_total: rx.Field[int] = rx.field(0)
    capacity_total: rx.Field[int] = rx.field(0)
    chart: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")
    pending_action: rx.Field[str] = rx.field("")  # the id of the executor being changed
    revoke_target: rx.Field[ExecutorRow] = rx.field(default_factory=ExecutorRow)
    revoke_open: rx.Field[bool] = rx.field(False)
    chart_has_data: rx.Field[bool] = rx.field(False)

    _refreshing: bool = False
    _chart_at: float = 0.0

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        """Read the registry and the pool chart."""
        async with self:
            self._chart_at = 0.0
        await self._refresh()

    @background
    async def tick(self, _now: str = "") -> None:
        """Live refresh while the page is open."""
        await self._refresh()

    async def _refresh(self) -> None:
        async with self:
            if self._refreshing:
                return
            self._refreshing = True
            chart_due = datetime.now(UTC).timestamp() - self._chart_at > CHART_EVERY_SECONDS
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            async with as_user(signed.principal) as conn:
                found = await executors.list_executors(conn)
                series = await executors.pool_load(conn) if chart_due else None
            rows = [executor_row(row) for row in found]
            async with self:
                self.rows = rows
                self.counts = {state: sum(1 for r in rows if r.state == state) for state in
                               ("online", "draining", "offline", "pending", "revoked")}  # fmt: skip
                live = [r for r in rows if r.state in ("online", "draining")]
                self.running_total = sum(r.running for r in rows)
                self.capacity_total = sum(r.capacity for r in live)
                if series is not None:
                    self.chart = pool_load_figure(series)
                    self.chart_has_data = any(point["running"] for point in series)
                    self._chart_at = datetime.now(UTC).timestamp()
                self.error = ""
                self.loaded = True
                self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
                self.loaded = True
        finally:
            async with self:
                self._refreshing = False

    @background
    async def set_drain(self, executor_id: str, drain: bool) -> AsyncIterator[Any]:
        """Drain (stop claiming, let running tasks finish) or undrain; org admins only (checked in SQL)."""
        async for event in self._act(executor_id, "drain" if drain else "undrain"):
            yield event

    @handler
    def ask_revoke(self, executor_id: str) -> None:
        """Open the revoke confirmation for an executor."""
        found = next((row for row in self.rows if row.id == executor_id), None)
        if found is not None:
            self.revoke_target = found
            self.revoke_open = True

    set_revoke_open = setter("revoke_open")

    @background
    async def revoke(self) -> AsyncIterator[Any]:
        """Revoke the confirmed executor's token; org admins only (checked in SQL)."""
        async with self:
            executor_id = self.revoke_target.id
            self.revoke_open = False
        async for event in self._act(executor_id, "revoke"):
            yield event

    async def _act(self, executor_id: str, action: str) -> AsyncIterator[Any]:
        async with self:
            if self.pending_action:
                return
            self.pending_action = executor_id

        async def act(conn: AsyncConnection, _signed: SignedIn) -> None:
            target = uuid.UUID(executor_id)
            if action == "revoke":
                await executors.revoke(conn, executor_id=target)
            else:
                await executors.set_drain(conn, executor_id=target, drain=action == "drain")

        try:
            acted = await self._read_as_user(act, needs_project=False)
        finally:
            async with self:
                self.pending_action = ""
        if acted.signed is None:
            return
        if acted.error:
            yield rx.toast.error(f"{action.capitalize()} refused: {acted.error}")
            return
        done = {"drain": "draining: it claims no new tasks", "undrain": "back online", "revoke": "token revoked"}
        yield rx.toast.success(f"Executor {done[action]}")
        await self._refresh()
