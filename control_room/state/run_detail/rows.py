"""What the run page shows, as serializable rows: header, parameters, tasks, attempts, artifacts, events."""

from __future__ import annotations

import dataclasses
from typing import Any

from control_room.state import formatting


@dataclasses.dataclass
class RunFacts:
    """A run's identity, state and timing, formatted: what a row of the runs table and the run page's header
    both show."""

    id: str = ""
    name: str = ""
    status: str = ""
    environment: str = ""
    trigger: str = ""
    requested_by: str = ""
    created: str = ""
    started: str = ""
    finished: str = ""
    created_iso: str = ""
    started_iso: str = ""
    finished_iso: str = ""
    duration: str = ""
    cancel_requested: bool = False


def run_facts(run: dict[str, Any], *, duration: str) -> dict[str, Any]:
    """The ``RunFacts`` fields of a run as the runs service returns it (in a list or alone)."""
    return {
        "id": str(run["id"]),
        "name": run["name"],
        "status": run["status"],
        "environment": run["environment"],
        "trigger": run["trigger"],
        "requested_by": run["requested_by_name"] or "",
        "created": formatting.timestamp(run["created_at"]),
        "started": formatting.timestamp(run["started_at"]),
        "finished": formatting.timestamp(run["finished_at"]),
        "created_iso": formatting.iso(run["created_at"]),
        "started_iso": formatting.iso(run["started_at"]),
        "finished_iso": formatting.iso(run["finished_at"]),
        "duration": duration,
        "cancel_requested": bool(run["cancel_requested"]),
    }


@dataclasses.dataclass
class RunHeader(RunFacts):
    """The run page's header: the run's facts, its project, error and warnings, and the run it re-ran."""

    project: str = ""
    project_id: str = ""
    error: str = ""
    warnings: str = ""  # found at submit: no live executor offers an engine of the routed pool
    project_slug: str = ""
    retry_of: str = ""
    retry_of_href: str = ""
    tasks_summary: str = ""
    is_terminal: bool = False


@dataclasses.dataclass
class ParamRow:
    """One run parameter."""

    name: str = ""
    value: str = ""


@dataclasses.dataclass
class TaskRow:
    """One task of the run."""

    id: str = ""
    key: str = ""
    engine: str = ""
    status: str = ""
    attempts: str = ""
    executor: str = ""
    pool: str = ""
    started: str = ""
    queued: str = ""  # queued until claimed
    duration: str = ""  # the latest attempt, claimed to finished
    depends_on: str = ""
    error: str = ""
    queue_reason: str = ""  # why a pending or queued task waits (ops.queue_reasons)
    reused_from: str = ""  # a re-run reused this task's outcome from that run (short id)
    reused_href: str = ""


@dataclasses.dataclass
class AttemptRow:
    """One claim of a task by an executor."""

    task_key: str = ""
    attempt: int = 0
    executor: str = ""
    claimed: str = ""
    started: str = ""
    duration: str = ""
    outcome: str = ""
    error: str = ""


@dataclasses.dataclass
class RunArtifactRow:
    """One artifact of the run, linking to the artifact browser."""

    id: str = ""
    name: str = ""
    task_key: str = ""
    size: str = ""
    sha_short: str = ""
    content_type: str = ""
    href: str = ""


@dataclasses.dataclass
class EventRow:
    """One line of the event log."""

    id: int = 0
    time: str = ""
    level: str = ""
    task: str = ""
    type: str = ""
    message: str = ""
    detail: str = ""  # the event's data, compact, shown muted after the message
    archived: bool = False  # read back from the run's Parquet archive (event retention)
