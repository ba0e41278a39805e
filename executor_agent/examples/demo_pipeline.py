"""The python step of the demo pipeline (shell → python → shell): summarise generated orders.

Self-contained on purpose: tasks of one run may execute on different agents, so the step makes its
input deterministically from its params instead of reading the previous task's work folder.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

from executor_agent.task_output import artifact, progress


def orders(rows: int, seed: int) -> list[dict[str, Any]]:
    """Generated orders: the same rows for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not a secret
    regions = ("north", "south", "east", "west")
    return [
        {"order_id": i, "region": regions[i % len(regions)], "amount": round(rng.uniform(5, 500), 2)}
        for i in range(1, rows + 1)
    ]


def summarize(rows: int = 200, seed: int = 7) -> dict[str, Any]:
    """Total and mean amount per region; writes summary.json as an artifact and returns the totals."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    data = orders(rows, seed)
    progress("orders generated", rows=len(data), stage=1, stages=2)
    by_region: dict[str, list[float]] = {}
    for order in data:
        by_region.setdefault(order["region"], []).append(order["amount"])
    summary = {
        region: {"orders": len(amounts), "total": round(sum(amounts), 2), "mean": round(statistics.mean(amounts), 2)}
        for region, amounts in sorted(by_region.items())
    }
    path = Path("summary.json")
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    artifact(path, content_type="application/json")
    progress("summary written", regions=len(summary), stage=2, stages=2)
    return {"rows": len(data), "regions": len(summary), "total": round(sum(o["amount"] for o in data), 2)}
