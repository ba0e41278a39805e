"""The run page's header: the run's identity, state and timing, and its parameters, formatted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_room import routes
from control_room.state import formatting
from control_room.state.run_detail.rows import ParamRow, RunHeader

TERMINAL = ("succeeded", "failed", "cancelled")
TASK_DONE = ("succeeded", "failed", "cancelled", "timed_out", "lost", "skipped")


def run_header(run: dict[str, Any], *, now: datetime) -> RunHeader:
    """The header of a run as ``runs.get_run`` returns it."""
    done = sum(1 for task in run["tasks"] if task["status"] in TASK_DONE)
    retry_of = run["retry_of"]
    return RunHeader(
        id=str(run["id"]),
        name=run["name"],
        status=run["status"],
        project=run["project"],
        project_id=str(run["project_id"]),
        environment=run["environment"],
        trigger=run["trigger"],
        requested_by=run["requested_by_name"] or "",
        created=formatting.timestamp(run["created_at"]),
        started=formatting.timestamp(run["started_at"]),
        finished=formatting.timestamp(run["finished_at"]),
        duration=formatting.between(run["started_at"], run["finished_at"], now=now),
        error=run.get("error") or "",
        warnings="; ".join(run.get("warnings") or []),
        cancel_requested=bool(run["cancel_requested"]),
        retry_of=formatting.short_id(retry_of) if retry_of else "",
        retry_of_href=routes.run_detail(str(retry_of)) if retry_of else "",
        tasks_summary=f"{done} of {len(run['tasks'])} tasks done",
        is_terminal=run["status"] in TERMINAL,
    )


def param_rows(params: dict[str, Any]) -> list[ParamRow]:
    """The run's parameters by name."""
    return [ParamRow(name=name, value=formatting.scalar(value)) for name, value in sorted(params.items())]
