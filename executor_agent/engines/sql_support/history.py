"""Query history records: one per statement of a SQL task, reported through the contract's ``queries`` operation."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

QueryState = Literal["running", "finished", "failed", "cancelled", "timed_out", "refused"]
SQL_TEXT_LIMIT = 100_000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class QueryActuals:
    """What the engine measured for a finished statement (None where the engine does not tell)."""

    rows: int | None = None
    bytes_read: int | None = None
    cpu_time_ms: int | None = None
    peak_memory_bytes: int | None = None
    queued_ms: int | None = None
    engine_elapsed_ms: int | None = None


@dataclass
class QueryRecord:
    """A row of ``ops.query_history`` as the agent reports it; keyed by task attempt and statement index."""

    statement_index: int
    engine: str
    sql_text: str
    state: QueryState = "running"
    query_id: str | None = None
    query_user: str | None = None
    catalog: str | None = None
    schema_name: str | None = None
    rows: int | None = None
    bytes_read: int | None = None
    cpu_time_ms: int | None = None
    elapsed_ms: int | None = None
    queued_ms: int | None = None
    peak_memory_bytes: int | None = None
    estimated_scan_bytes: int | None = None
    estimated_rows: int | None = None
    scan_cap_bytes: int | None = None
    error: str | None = None
    result_artifact: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=utc_now)
    finished_at: dt.datetime | None = None

    def apply(self, actuals: QueryActuals) -> None:
        """Copy the engine's figures; the agent's own wall clock stays the elapsed time unless the engine knows."""
        self.rows = actuals.rows if actuals.rows is not None else self.rows
        self.bytes_read = actuals.bytes_read
        self.cpu_time_ms = actuals.cpu_time_ms
        self.peak_memory_bytes = actuals.peak_memory_bytes
        self.queued_ms = actuals.queued_ms
        if actuals.engine_elapsed_ms is not None:
            self.elapsed_ms = actuals.engine_elapsed_ms

    def finish(self, state: QueryState, *, error: str | None = None) -> None:
        """Mark the statement ended; the elapsed time defaults to the agent's wall clock."""
        self.state = state
        self.error = error
        self.finished_at = utc_now()
        if self.elapsed_ms is None:
            self.elapsed_ms = int((self.finished_at - self.started_at).total_seconds() * 1000)

    def payload(self) -> dict[str, Any]:
        """The JSON body item of ``POST /tasks/{task_id}/queries``."""
        body = asdict(self)
        body["sql_text"] = self.sql_text[:SQL_TEXT_LIMIT]
        body["started_at"] = self.started_at.isoformat()
        body["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return body
