"""Plotly figures of a job's pages, built from plain rows: its version's DAG (the run page's figure), run
durations coloured by outcome with the p95 line, success rate per day, each task's duration trend, and
the calendar strip of a schedule's past fires."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import plotly.graph_objects as go

from control_room.components.figures import POOL_COLORS, base_layout, dag_figure
from control_room.components.status import STATUS_HEX

GRID = "rgba(128,128,128,0.18)"
# A schedule's fire: its own status, or for a fire that started a run, the run's.
FIRE_HEX = {**STATUS_HEX, "fired": "#0090FF", "missed": "#FFC53D", "skipped": "#B9BBC6", "failed_fire": "#E5484D"}


def version_dag_figure(tasks: Sequence[dict[str, Any]]) -> go.Figure:
    """The tasks of a template version as the run page draws a run's DAG (all in one neutral colour)."""
    return dag_figure([{**task, "status": "pending"} for task in tasks])


def _seconds_over_time(height: int, *, legend_y: float) -> dict[str, Any]:
    """The layout of a chart of durations: time along x, seconds up from zero, the legend above."""
    return base_layout(
        height,
        showlegend=True,
        legend={"orientation": "h", "y": legend_y, "x": 0},
        xaxis={"type": "date", "showgrid": False},
        yaxis={"rangemode": "tozero", "gridcolor": GRID, "title": {"text": "seconds"}},
        margin={"l": 50, "r": 10, "t": 36, "b": 28},
    )


def _durations(points: Sequence[dict[str, Any]], name: str, mode: str, **style: Any) -> go.Scatter:
    """One trace of a chart of durations: each point's ``duration_s`` over its ``created_at``."""
    return go.Scatter(x=[point["created_at"] for point in points], y=[point["duration_s"] for point in points],
                      mode=mode, name=name, **style)  # fmt: skip


def duration_figure(runs: Sequence[dict[str, Any]], p95_s: float | None) -> go.Figure:
    """One dot per finished run (x: created, y: duration in seconds) in its outcome's colour, and the p95."""
    figure = go.Figure()
    finished = [run for run in runs if run["duration_s"] is not None]
    for status in sorted({run["status"] for run in finished}):
        points = [run for run in finished if run["status"] == status]
        figure.add_trace(
            _durations(
                points, status, "markers",
                marker={"color": STATUS_HEX.get(status, "#8B8D98"), "size": 9},
                customdata=[[str(run["id"])[:8], run["trigger"]] for run in points],
                hovertemplate=f"<b>{status}</b> · run %{{customdata[0]}} (%{{customdata[1]}})"
                "<br>%{x|%Y-%m-%d %H:%M} UTC · %{y:.1f} s<extra></extra>",
            )
        )  # fmt: skip
    if p95_s is not None:
        figure.add_hline(
            y=p95_s, line={"color": "#8E4EC6", "dash": "dash", "width": 1.5},
            annotation={"text": f"p95 {p95_s:.1f} s", "font": {"color": "#8E4EC6"}}, annotation_position="top left",
        )  # fmt: skip
    figure.update_layout(**_seconds_over_time(240, legend_y=1.18))
    return figure


def success_figure(days: Sequence[dict[str, Any]]) -> go.Figure:
    """Success rate per UTC day (bars, 0-100 %), the number of finished runs in the hover."""
    figure = go.Figure(
        go.Bar(
            x=[str(day["day"]) for day in days],
            y=[round(100 * day["rate"], 1) for day in days],
            marker={"color": [STATUS_HEX["succeeded"] if day["rate"] >= 0.9 else STATUS_HEX["failed"] for day in days]},
            customdata=[[day["succeeded"], day["finished"]] for day in days],
            hovertemplate="%{x}: %{y}% (%{customdata[0]} of %{customdata[1]} runs)<extra></extra>",
        )
    )
    figure.update_layout(
        **base_layout(
            200,
            xaxis={"type": "category", "showgrid": False},
            yaxis={"range": [0, 105], "gridcolor": GRID, "ticksuffix": "%"},
            margin={"l": 44, "r": 10, "t": 10, "b": 28},
        )
    )
    return figure


def task_trend_figure(tasks: Sequence[dict[str, Any]]) -> go.Figure:
    """One line per task key: its duration in each run (x: the run's creation)."""
    figure = go.Figure()
    for index, key in enumerate(sorted({task["key"] for task in tasks})):
        points = [task for task in tasks if task["key"] == key]
        figure.add_trace(
            _durations(
                points, key, "lines+markers",
                line={"color": POOL_COLORS[index % len(POOL_COLORS)], "width": 1.6},
                marker={"size": 5},
                hovertemplate=f"<b>{key}</b><br>%{{x|%Y-%m-%d %H:%M}} UTC · %{{y:.1f}} s<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(**_seconds_over_time(220, legend_y=1.2))
    return figure


def fire_outcome(fire: dict[str, Any]) -> str:
    """What a past fire came to: its run's status when it started one, else its own status."""
    if fire["status"] == "fired" and fire.get("run_status"):
        return str(fire["run_status"])
    return "failed_fire" if fire["status"] == "failed" else str(fire["status"])


def fire_strip_figure(fires: Sequence[dict[str, Any]]) -> go.Figure:
    """A calendar strip: one square per past fire along time, coloured by outcome (fired and the run's
    outcome, queued, skipped, missed, failed)."""
    ordered = sorted(fires, key=lambda fire: fire["fire_time"])
    outcomes = [fire_outcome(fire) for fire in ordered]
    figure = go.Figure(
        go.Scatter(
            x=[fire["fire_time"] for fire in ordered],
            y=[0] * len(ordered),
            mode="markers",
            marker={"symbol": "square", "size": 16, "color": [FIRE_HEX.get(o, "#8B8D98") for o in outcomes]},
            customdata=[[o.replace("failed_fire", "failed to fire"), fire.get("reason") or ""]
                        for o, fire in zip(outcomes, ordered, strict=True)],
            hovertemplate="%{x|%Y-%m-%d %H:%M} UTC · <b>%{customdata[0]}</b><br>%{customdata[1]}<extra></extra>",
        )
    )  # fmt: skip
    span = (ordered[-1]["fire_time"] - ordered[0]["fire_time"]) if ordered else timedelta(0)
    pad = max(span * 0.05, timedelta(minutes=15))  # a single fire still gets a readable time axis
    x_range = [ordered[0]["fire_time"] - pad, ordered[-1]["fire_time"] + pad] if ordered else None
    figure.update_layout(
        **base_layout(
            90,
            xaxis={"type": "date", "showgrid": False, "showline": False, "range": x_range},
            yaxis={"visible": False, "fixedrange": True, "range": [-1, 1]},
            margin={"l": 10, "r": 10, "t": 6, "b": 26},
        )
    )
    return figure
