"""The run page's header carries the warnings stored at submit (no live executor offers an engine)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from control_room.state.run_detail.header import run_header


def run(**extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(), "name": "r", "status": "queued", "project": "p", "project_id": uuid.uuid4(),
        "environment": "dev", "trigger": "api", "requested_by_name": None, "created_at": now, "started_at": None,
        "finished_at": None, "cancel_requested": False, "retry_of": None, "tasks": [], **extra,
    }  # fmt: skip


def test_the_header_shows_every_warning_and_nothing_without_them() -> None:
    warned = run_header(
        run(warnings=["task a: no executor of pool etl", "task b: no executor of pool ml"]), now=datetime.now(UTC)
    )
    assert warned.warnings == "task a: no executor of pool etl; task b: no executor of pool ml"
    assert run_header(run(warnings=[]), now=datetime.now(UTC)).warnings == ""
