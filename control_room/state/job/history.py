"""Run history of the job page: duration per run coloured by outcome with the p95 line, success rate per
day, and each task's duration trend (plotly figures built from job_history's rows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import reflex as rx
from psycopg import AsyncConnection

from control_room.components.job_figures import duration_figure, success_figure, task_trend_figure
from control_room.services import job_history
from control_room.state import formatting
from control_room.state.events import background
from control_room.state.job.detail import JobState

HISTORY_RUNS = 200
SUCCESS_DAYS = 30
Row = dict[str, Any]


def p95(values: list[float]) -> float | None:
    """The 95th percentile (nearest rank) of durations, None without any."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


class JobHistoryState(JobState):
    """The history figures; loaded with the page and after each run the page submits."""

    durations: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    success: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    task_trend: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    history_summary: rx.Field[str] = rx.field("")
    has_history: rx.Field[bool] = rx.field(False)
    history_error: rx.Field[str] = rx.field("")

    _signature: str = ""

    @background
    async def load_history(self, _now: str = "") -> None:
        """Fetch the latest runs, daily success and task durations; redraw only when they changed."""

        async def read(conn: AsyncConnection, job_id: uuid.UUID) -> tuple[uuid.UUID, list[Row], list[Row], list[Row]]:
            since = datetime.now(UTC) - timedelta(days=SUCCESS_DAYS)
            return (
                job_id,
                await job_history.run_durations(conn, template_id=job_id, limit=HISTORY_RUNS),
                await job_history.daily_success(conn, template_id=job_id, since=since),
                await job_history.task_durations(conn, template_id=job_id, limit=HISTORY_RUNS),
            )

        found = await self.read_job_showing(read, error="history_error")
        if found is None:
            return
        job_id, runs, days, tasks = found
        signature = f"{job_id}|{[(r['id'], r['status']) for r in runs]}"
        finished = [r["duration_s"] for r in runs if r["duration_s"] is not None]
        top = p95(finished)
        async with self:
            self.history_error = ""
            if signature == self._signature:
                return
            self._signature = signature
            self.has_history = bool(finished)
            self.durations = duration_figure(runs, top)
            self.success = success_figure(days)
            self.task_trend = task_trend_figure(tasks)
            self.history_summary = (
                f"{len(finished)} finished of the last {len(runs)} runs · p95 {formatting.duration(top)}"
                if finished else "No finished run yet."
            )  # fmt: skip
