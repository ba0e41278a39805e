"""The run page's tasks: one row per task in DAG order, one row per attempt, and the run's artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_room import routes
from control_room.components.figures import task_order
from control_room.state import formatting
from control_room.state.run_detail.rows import AttemptRow, RunArtifactRow, TaskRow


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


def task_rows(tasks: list[dict[str, Any]], *, now: datetime) -> list[TaskRow]:
    """A row per task, in the order given."""
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
            duration=formatting.between(task["started_at"], task["finished_at"], now=now),
            depends_on=", ".join(task["depends_on"]),
            error=task["error"] or "",
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
            duration=formatting.between(a["started_at"] or a["claimed_at"], a["finished_at"], now=now),
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
