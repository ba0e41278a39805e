"""The run page's event log: rows of the live tail, its level filter and page sizes."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from control_room.db.tables import EventArchive
from control_room.state import formatting
from control_room.state.rows import EventRow

EVENTS_PAGE = 200
MAX_EVENTS_KEPT = 2000
ARCHIVED_PAGE = 1000  # archived events read back per "Load archived events"
LEVELS = ("debug", "info", "warning", "error")
MAX_DETAIL_CHARS = 240
# After React rendered the new rows (a state update and this script arrive together).
SCROLL_LOG_TO_END = (
    "setTimeout(() => { const log = document.getElementById('event-log'); "
    "if (log) { log.scrollTop = log.scrollHeight; } }, 80)"
)
SCROLL_LOG_TO_START = "const log = document.getElementById('event-log'); if (log) { log.scrollTop = 0; }"


def event_row(row: dict[str, Any], *, archived: bool = False) -> EventRow:
    """A log line of an event as ``events.list_events`` (or ``retention.archived_events``) returns it."""
    data = dict(row["data"] or {})
    if data.get("stream") == "stdout":  # the usual case; stderr stays visible
        data.pop("stream")
    wall = data.pop("duration_s", None)
    detail = " ".join(f"{key}={formatting.scalar(value)}" for key, value in data.items())
    if isinstance(wall, int | float):  # measured by the agent around the engine: not the attempt's extent
        detail = f"process wall time {formatting.duration(float(wall))} {detail}".rstrip()
    return EventRow(
        id=int(row["id"]),
        time=formatting.clock(row["ts"]),
        level=row["level"],
        task=row["task_key"] or "run",
        type=row["type"],
        message=row["message"] or row["type"],
        detail=detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS] + "…",
        archived=archived,
    )


def archive_notice(archive: EventArchive | None) -> str:
    """What the event log says about a run whose events the retention moved to Parquet ("" when none)."""
    if archive is None or archive.archived_at is None:
        return ""
    when = f"{archive.archived_at.astimezone(UTC):%Y-%m-%d %H:%M}"
    return (
        f"{archive.event_count:,} events and {archive.attempt_count:,} attempts of this run were archived to "
        f"Parquet on {when} UTC (project retention: {archive.retention_days} days after the run finished)."
    )


def archived_matches(row: dict[str, Any], *, level: str, text: str, task_id: str) -> bool:
    """Whether an archived event passes the log's level, search and task filters (as list_events applies them)."""
    if LEVELS.index(row["level"]) < LEVELS.index(level_or_default(level)):
        return False
    if text and text.lower() not in (row["message"] or "").lower():
        return False
    return not task_id or str(row["task_id"]) == task_id


def min_level(level: str) -> str | None:
    """The services' level filter for a level picked in the UI (debug: no filter)."""
    return None if level == "debug" else level


def level_or_default(level: str) -> str:
    """``level`` when it is one of ``LEVELS``, else debug (everything)."""
    return level if level in LEVELS else "debug"
