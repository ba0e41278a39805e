"""The run page's header: the run's identity, state and timing, and its parameters, formatted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_room import routes
from control_room.state import formatting
from control_room.state.rows import ParamRow, RunHeader
from control_room.state.run_detail.rows import run_facts

TERMINAL = ("succeeded", "failed", "cancelled")
TASK_DONE = ("succeeded", "failed", "cancelled", "timed_out", "lost", "skipped")


def tasks_summary(status: str, tasks: list[dict[str, Any]]) -> str:
    """What the tasks came to: ``1 of 3 tasks done`` while the run goes on; once it ended, the count of
    each outcome (``2 succeeded, 1 failed of 3 tasks``), so a failed run never reads as all done."""
    total = len(tasks)
    if status not in TERMINAL:
        done = sum(1 for task in tasks if task["status"] in TASK_DONE)
        return f"{done} of {total} tasks done"
    counts: dict[str, int] = {}
    for task in tasks:
        outcome = "reused" if task.get("reused_from_task") else task["status"]
        counts[outcome] = counts.get(outcome, 0) + 1
    if set(counts) == {"succeeded"}:
        return f"{total} of {total} tasks succeeded"
    order = ("succeeded", "reused", "failed", "timed_out", "lost", "cancelled", "skipped")
    parts = [f"{counts[name]} {name.replace('_', ' ')}" for name in order if counts.get(name)]
    parts += [f"{count} {name}" for name, count in counts.items() if name not in order]
    return f"{', '.join(parts)} of {total} task{'s' if total != 1 else ''}"


def run_header(run: dict[str, Any], *, now: datetime) -> RunHeader:
    """The header of a run as ``runs.get_run`` returns it."""
    retry_of = run["retry_of"]
    return RunHeader(
        **run_facts(run, duration=formatting.between(run["started_at"], run["finished_at"], now=now)),
        project=run.get("project_name") or run["project"],
        project_id=str(run["project_id"]),
        error=run.get("error") or "",
        warnings="; ".join(run.get("warnings") or []),
        project_slug=run["project"],
        retry_of=formatting.short_id(retry_of) if retry_of else "",
        retry_of_href=routes.run_detail(str(retry_of)) if retry_of else "",
        tasks_summary=tasks_summary(run["status"], run["tasks"]),
        is_terminal=run["status"] in TERMINAL,
    )


def rerun_links(run: dict[str, Any]) -> list[ParamRow]:
    """The runs that re-ran this one (short id and page), oldest first."""
    return [ParamRow(name=formatting.short_id(rid), value=routes.run_detail(str(rid))) for rid in run.get("reruns", [])]


def param_rows(params: dict[str, Any]) -> list[ParamRow]:
    """The run's parameters by name."""
    return [ParamRow(name=name, value=formatting.scalar(value)) for name, value in sorted(params.items())]
