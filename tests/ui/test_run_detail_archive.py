"""What the run page's event log says about a run whose events the retention archived, and which archived
events pass its level, search and task filters (the same ones list_events applies to live events)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from control_room.db.tables import EventArchive
from control_room.state.run_detail.events import archive_notice, archived_matches, event_row

TASK = uuid.uuid4()


def _event(level: str, message: str, task_id: uuid.UUID | None = TASK) -> dict[str, Any]:
    return {"id": 7, "ts": datetime(2026, 10, 1, 3, 4, 5, tzinfo=UTC), "level": level, "task_key": "load",
            "type": "log", "message": message, "data": {"stream": "stdout"}, "task_id": task_id}  # fmt: skip


def test_the_notice_names_counts_date_and_retention() -> None:
    archive = EventArchive(event_count=12345, attempt_count=3, retention_days=30,
                           archived_at=datetime(2026, 11, 2, 9, 30, 12, tzinfo=UTC))  # fmt: skip
    assert archive_notice(archive) == (
        "12,345 events and 3 attempts of this run were archived to Parquet on 2026-11-02 09:30 UTC "
        "(project retention: 30 days after the run finished)."
    )
    assert archive_notice(None) == ""


def test_archived_events_are_filtered_like_live_ones_and_marked() -> None:
    warning = _event("warning", "Watermark behind by 2 h")
    assert archived_matches(warning, level="info", text="watermark", task_id=str(TASK))
    assert not archived_matches(warning, level="error", text="", task_id="")
    assert not archived_matches(warning, level="debug", text="partition", task_id="")
    assert not archived_matches(warning, level="debug", text="", task_id=str(uuid.uuid4()))
    assert archived_matches(_event("debug", "run-level", task_id=None), level="nonsense", text="", task_id="")
    row = event_row(warning, archived=True)
    assert row.archived and row.time == "03:04:05.000" and row.task == "load" and row.detail == ""
    assert not event_row(warning).archived
