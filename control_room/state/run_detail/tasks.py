"""The run page's tasks: one row per task in DAG order, one row per attempt, and the run's artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_room import routes
from control_room.components.figures import task_order
from control_room.state import formatting
from control_room.state.rows import AttemptRow, RunArtifactRow, TaskRow


def ordered_tasks(run: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The run's tasks in DAG order, and each task key's place in it."""
    order = {key: index for index, key in enumerate(task_order(run["tasks"]))}
    return sorted(run["tasks"], key=lambda task: order[task["key"]]), order


def flat_attempts(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every attempt of every task, each with its task's key and executor name."""
    return [
        {**attempt, "task_key": task["key"], "executor": attempt["executor_name"]}
        for task in tasks
        for attempt in task["attempts"]
    ]


def _executor_of(task: dict[str, Any]) -> str:
    last_attempt = task["attempts"][-1]["executor_name"] if task["attempts"] else ""
    return str(task["executor_name"] or last_attempt or "")


def queued_for(task: dict[str, Any], *, now: datetime) -> str:
    """How long the task waited in the queue: from becoming queued to its latest claim (to now while queued)."""
    queued_at = task["queued_at"]
    if queued_at is None or task.get("reused_from_task"):
        return ""
    claims = [a["claimed_at"] for a in task["attempts"] if a["claimed_at"] and a["claimed_at"] >= queued_at]
    if claims:
        return formatting.between(queued_at, max(claims))
    return formatting.between(queued_at, None, now=now) if task["status"] == "queued" else ""


def claimed_to_finished(attempt: dict[str, Any], *, now: datetime) -> str:
    """An attempt's extent, the one the Gantt draws: claimed by an executor until finished (or now)."""
    return formatting.between(attempt["claimed_at"], attempt["finished_at"], now=now)


def task_rows(tasks: list[dict[str, Any]], *, now: datetime) -> list[TaskRow]:
    """A row per task, in the order given; its duration is its latest attempt's, claimed to finished."""
    return [
        TaskRow(
            id=str(task["id"]),
            key=task["key"],
            engine=task["engine"],
            status=task["status"],
            attempts=f"{task['attempt']}/{task['max_attempts']}",
            executor=_executor_of(task),
            pool=task["pool"] or "",
            started=formatting.timestamp(task["started_at"]),
            queued=queued_for(task, now=now),
            duration=claimed_to_finished(task["attempts"][-1], now=now) if task["attempts"] else "",
            depends_on=", ".join(task["depends_on"]),
            error=task["error"] or "",
            queue_reason=task.get("queue_reason") or "",
            reused_from=formatting.short_id(task["reused_from_run"]) if task.get("reused_from_run") else "",
            reused_href=routes.run_detail(str(task["reused_from_run"])) if task.get("reused_from_run") else "",
        )
        for task in tasks
    ]


def attempt_rows(attempts: list[dict[str, Any]], order: dict[str, int], *, now: datetime) -> list[AttemptRow]:
    """A row per attempt, by claim time (then DAG order)."""
    return [
        AttemptRow(
            task_key=a["task_key"],
            attempt=a["attempt"],
            executor=a["executor"] or "",
            claimed=formatting.timestamp(a["claimed_at"]),
            started=formatting.timestamp(a["started_at"]),
            duration=claimed_to_finished(a, now=now),
            outcome=a["outcome"] or "running",
            error=a["error"] or "",
        )
        for a in sorted(attempts, key=lambda a: (a["claimed_at"], order[a["task_key"]]))
    ]


def artifact_rows(found: list[dict[str, Any]]) -> list[RunArtifactRow]:
    """A row per artifact of the run, linking to it in the artifact browser."""
    return [
        RunArtifactRow(
            id=str(a["id"]),
            name=a["name"],
            task_key=a["task_key"] or "",
            size=formatting.size(a["size_bytes"]),
            sha_short=a["sha256"][:12],
            content_type=a["content_type"],
            href=routes.artifacts(run_id=str(a["run_id"]), artifact_id=str(a["id"])),
        )
        for a in found
    ]
