"""What the run page shows, as serializable rows: header, parameters, tasks, attempts, artifacts, events."""

from __future__ import annotations

from typing import Any

from control_room.state import formatting


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
