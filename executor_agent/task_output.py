"""For task code: report progress, events and artifacts to the agent from inside a shell or python task.

Each call prints one ``::lakehouse::{json}`` line on standard output, which the agent turns into an
event or an artifact upload. Standard library only, so scripts can copy the convention without
installing the agent::

    from executor_agent.task_output import artifact, progress

    progress("rows loaded", rows=1200)
    artifact("out/summary.json")
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

PREFIX = "::lakehouse::"


def _directive(payload: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def progress(message: str, **data: Any) -> None:
    """A ``progress`` event (e.g. stages done of total)."""
    _directive({"type": "progress", "message": message, "data": data})


def event(type: str, message: str = "", *, level: str = "info", **data: Any) -> None:
    """Any event type (lower-case letters, digits, '_' and '.')."""
    _directive({"type": type, "message": message, "level": level, "data": data})


def artifact(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    content_type: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Upload a file as an artifact of this attempt; leave it unchanged until the task ends (the agent copies
    it when it reads this line, which may be a moment later)."""
    payload: dict[str, Any] = {"artifact": os.path.abspath(path)}
    if name is not None:
        payload["name"] = name
    if content_type is not None:
        payload["content_type"] = content_type
    if metadata:
        payload["metadata"] = metadata
    _directive(payload)
