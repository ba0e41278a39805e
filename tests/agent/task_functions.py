"""Task code the python-engine tests run in child processes (imported there from the repository root)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from executor_agent.task_output import artifact, progress


def add(a: int, b: int) -> dict[str, Any]:
    """Returns the sum; ``day`` (a run param it does not take) is filtered out by its signature."""
    progress("adding", a=a, b=b)
    return {"sum": a + b, "pid": os.getpid()}


def scalar(value: int) -> int:
    return value * 2


def boom(message: str = "bad input") -> None:
    raise ValueError(message)


def not_json() -> object:
    return {"when": object()}


def write_report(lines: int = 3) -> dict[str, Any]:
    path = Path("reports") / "report.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"line {i}\n" for i in range(lines)), encoding="utf-8")
    artifact(path)
    return {"lines": lines}


def chatty(lines: int = 100, delay_s: float = 0.0) -> dict[str, Any]:
    """Prints many lines (events), optionally slowly."""
    for i in range(lines):
        print(f"line {i}", flush=True)
        if delay_s:
            time.sleep(delay_s)
    return {"lines": lines}


def allocate(megabytes: int) -> int:
    """Holds ``megabytes`` of memory at once (more than a memory cap allows: a MemoryError in the child)."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)
