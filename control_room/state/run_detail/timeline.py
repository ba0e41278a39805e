"""The run page's figures: the task DAG and the Gantt of attempts, rebuilt only when something changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from control_room.components.figures import dag_figure, gantt_figure


def figure_signature(tasks: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> str:
    """What the figures depend on: each task's status and attempt, each attempt's outcome and end."""
    return json.dumps(
        [(t["key"], t["status"], t["attempt"]) for t in tasks]
        + [(a["task_key"], a["attempt"], a["outcome"], str(a["finished_at"])) for a in attempts]
    )


@dataclass(frozen=True)
class Figures:
    """New figures to show; None where the one shown is still right."""

    dag: go.Figure | None
    gantt: go.Figure | None
    signature: str


def updated_figures(
    tasks: list[dict[str, Any]], attempts: list[dict[str, Any]], *, shown: str, now: datetime, grow: bool = True
) -> Figures:
    """The DAG when a task or attempt changed; the Gantt then too, and, while an attempt runs, when ``grow``
    says its bar is due to grow (the caller spaces those out: a figure sent on every live refresh of a busy run
    kept the browser drawing it several times a second)."""
    signature = figure_signature(tasks, attempts)
    running = any(a["outcome"] is None for a in attempts)
    changed = signature != shown
    return Figures(
        dag=dag_figure(tasks) if changed else None,
        gantt=gantt_figure(tasks, attempts, now=now) if changed or (running and grow) else None,
        signature=signature,
    )
