"""What the run page says about a run, from plain rows: the tasks' summary (a failed run never reads as all
done), the durations and their definitions, the process wall time of finish events, and the run's error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from control_room.services.runs import run_error_summary
from control_room.state.run_detail.events import event_row
from control_room.state.run_detail.header import tasks_summary
from control_room.state.run_detail.tasks import task_rows

T0 = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)


def _task(key: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "status": status, "error": None, "finished_at": T0, **extra}


def test_the_summary_counts_each_outcome_once_the_run_ended() -> None:
    tasks = [_task("a", "succeeded"), _task("b", "failed"), _task("c", "skipped")]
    assert tasks_summary("running", tasks) == "3 of 3 tasks done"
    assert tasks_summary("failed", tasks) == "1 succeeded, 1 failed, 1 skipped of 3 tasks"
    assert tasks_summary("succeeded", [_task("a", "succeeded")] * 2) == "2 of 2 tasks succeeded"
    reused = [_task("a", "succeeded", reused_from_task=uuid.uuid4()), _task("b", "succeeded")]
    assert tasks_summary("succeeded", reused) == "1 succeeded, 1 reused of 2 tasks"


def test_the_run_error_names_the_first_failure_and_what_else_ended() -> None:
    tasks = [
        _task("a", "failed", error="disk full", finished_at=T0 + timedelta(seconds=2)),
        _task("b", "timed_out", error="timeout", finished_at=T0 + timedelta(seconds=1)),
        _task("c", "skipped"),
    ]
    assert run_error_summary("failed", tasks) == (
        'task "b" timed_out: timeout; 1 more task did not succeed; 1 downstream task skipped'
    )
    assert run_error_summary("succeeded", tasks) is None


def test_task_durations_are_its_latest_attempts_and_the_queue_wait() -> None:
    attempt = {
        "claimed_at": T0 + timedelta(seconds=3),
        "finished_at": T0 + timedelta(seconds=3, milliseconds=253),
        "executor_name": "x",
    }
    task = {
        "id": uuid.uuid4(),
        "key": "a",
        "engine": "shell",
        "status": "succeeded",
        "attempt": 1,
        "max_attempts": 3,
        "executor_name": "x",
        "pool": "default",
        "queued_at": T0,
        "started_at": T0 + timedelta(seconds=3.2),
        "finished_at": T0 + timedelta(seconds=3.25),
        "depends_on": [],
        "error": None,
        "attempts": [attempt],
    }
    (row,) = task_rows([task], now=T0 + timedelta(minutes=1))
    assert row.duration == "253 ms"  # claimed -> finished, as the attempts table and the Gantt bar
    assert row.queued == "3.0 s"


def test_a_finish_event_shows_the_process_wall_time_by_name() -> None:
    row = event_row(
        {
            "id": 1,
            "ts": T0,
            "level": "info",
            "task_key": "a",
            "type": "finish",
            "message": "succeeded after 0.1 s",
            "data": {"outcome": "succeeded", "duration_s": 0.141},
        }
    )
    assert row.detail.startswith("process wall time 141 ms") and "duration_s" not in row.detail
