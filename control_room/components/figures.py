"""Plotly figures of the UI, built from plain rows: a run's task DAG (networkx layout), the Gantt of
its tasks' attempts, and running tasks per pool over the last hour."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import networkx as nx
import plotly.graph_objects as go

from control_room.components.status import STATUS_HEX

FONT = {"family": "Inter, system-ui, sans-serif", "size": 12}
POOL_COLORS = ("#3E63DD", "#12A594", "#F76B15", "#8E4EC6", "#E93D82", "#0090FF", "#46A758", "#FFC53D")


def _base_layout(height: int, **extra: Any) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": FONT,
        "showlegend": False,
        **extra,
    }


def base_layout(height: int, **extra: Any) -> dict[str, Any]:
    """The layout every figure of the UI starts from: transparent, the UI's font, no legend."""
    return _base_layout(height, **extra)


def _graph(tasks: Sequence[dict[str, Any]]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for task in tasks:
        graph.add_node(task["key"])
    for task in tasks:
        for dependency in task.get("depends_on") or []:
            if dependency in graph:
                graph.add_edge(dependency, task["key"])
    return graph


def task_order(tasks: Sequence[dict[str, Any]]) -> list[str]:
    """Task keys in dependency order (upstream first; ties keep the spec's order)."""
    graph = _graph(tasks)
    position = {task["key"]: index for index, task in enumerate(tasks)}
    if not nx.is_directed_acyclic_graph(graph):
        return list(position)
    return list(nx.lexicographical_topological_sort(graph, key=lambda key: position[key]))


def dag_positions(tasks: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Layered positions: each task one column right of its deepest dependency (networkx's
    multipartite layout over topological generations), spread vertically within its column."""
    graph = _graph(tasks)
    if not nx.is_directed_acyclic_graph(graph):  # the SQL refuses cycles; stay drawable regardless
        return {key: (float(i), 0.0) for i, key in enumerate(graph.nodes)}
    for layer, keys in enumerate(nx.topological_generations(graph)):
        for key in keys:
            graph.nodes[key]["layer"] = layer
    raw = nx.multipartite_layout(graph, subset_key="layer", align="vertical", scale=1.0)
    return {key: (float(x), float(y)) for key, (x, y) in raw.items()}


def dag_figure(tasks: Sequence[dict[str, Any]]) -> go.Figure:
    """Tasks as nodes coloured by state, dependencies as arrows (left to right)."""
    positions = dag_positions(tasks)
    by_key = {task["key"]: task for task in tasks}
    figure = go.Figure()
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    annotations = []
    for task in tasks:
        for dependency in task.get("depends_on") or []:
            if dependency not in positions:
                continue
            (x0, y0), (x1, y1) = positions[dependency], positions[task["key"]]
            edge_x += [x0, x1, None]
            edge_y += [y0, y1, None]
            annotations.append(
                {
                    "x": x1, "y": y1, "ax": x0, "ay": y0, "xref": "x", "yref": "y", "axref": "x", "ayref": "y",
                    "showarrow": True, "arrowhead": 2, "arrowsize": 1.2, "arrowwidth": 1.4,
                    "arrowcolor": "#8B8D98", "standoff": 16, "startstandoff": 16, "text": "",
                }
            )  # fmt: skip
    figure.add_trace(
        go.Scatter(x=edge_x, y=edge_y, mode="lines", line={"color": "#B9BBC6", "width": 1.4}, hoverinfo="skip")
    )
    keys = list(positions)
    figure.add_trace(
        go.Scatter(
            x=[positions[k][0] for k in keys],
            y=[positions[k][1] for k in keys],
            mode="markers+text",
            text=keys,
            textposition="bottom center",
            marker={
                "size": 26,
                "color": [STATUS_HEX.get(by_key[k]["status"], "#8B8D98") for k in keys],
                "line": {"color": "rgba(255,255,255,0.9)", "width": 2},
                "symbol": "circle",
            },
            customdata=[[by_key[k]["status"], by_key[k]["engine"]] for k in keys],
            hovertemplate="<b>%{text}</b><br>%{customdata[1]} · %{customdata[0]}<extra></extra>",
            meta={"task_keys": keys},  # a click on a node opens that task's panel (its point index)
        )
    )
    xs = [p[0] for p in positions.values()] or [0.0]
    ys = [p[1] for p in positions.values()] or [0.0]
    pad_x = max((max(xs) - min(xs)) * 0.12, 0.3)
    pad_y = max((max(ys) - min(ys)) * 0.25, 0.35)
    axis = {"visible": False, "fixedrange": True}
    figure.update_layout(
        **_base_layout(
            min(120 + 40 * max(len(tasks), 1), 380),
            xaxis={**axis, "range": [min(xs) - pad_x, max(xs) + pad_x]},
            yaxis={**axis, "range": [min(ys) - pad_y, max(ys) + pad_y]},
            annotations=annotations,
        )
    )
    return figure


# A bar narrower than this share of the chart's time span cannot be seen: a marker shows where it is.
NARROW_SHARE = 0.01


def _clock(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def _attempt_extent(attempt: dict[str, Any], now: datetime) -> tuple[datetime, datetime] | None:
    claimed = attempt["claimed_at"]
    return None if claimed is None else (claimed, attempt["finished_at"] or now)


def gantt_figure(
    tasks: Sequence[dict[str, Any]], attempts: Sequence[dict[str, Any]], *, now: datetime | None = None
) -> go.Figure:
    """One row per task, one bar per attempt at its real extent, claimed to finished (still open: to now),
    coloured by the attempt's outcome. Attempts too short to see get a marker at their start, so a bar
    never looks longer than the attempt was (nor overlaps a task that ran after it)."""
    now = now or datetime.now(UTC)
    order = task_order(tasks)
    figure = go.Figure()
    extents = [(attempt, extent) for attempt in attempts if (extent := _attempt_extent(attempt, now)) is not None]
    span = 0.0
    if extents:
        span = (max(end for _, (_, end) in extents) - min(start for _, (start, _) in extents)).total_seconds()
    for attempt, (claimed, finished) in extents:
        state = attempt["outcome"] or "running"
        label = f"{attempt['task_key']} · attempt {attempt['attempt']}"
        color = STATUS_HEX.get(state, "#8B8D98")
        seconds = (finished - claimed).total_seconds()
        hover = (
            f"<b>{label}</b><br>{state} on {attempt.get('executor') or 'unknown executor'}"
            f"<br>{_clock(claimed)} → {_clock(finished)} UTC<br>claimed → finished: {seconds * 1000:.0f} ms"
            "<extra></extra>"
        )
        figure.add_trace(
            go.Bar(
                base=[claimed],
                x=[seconds * 1000],
                y=[attempt["task_key"]],
                orientation="h",
                marker={"color": color},
                width=0.5,
                name=label,
                hovertemplate=hover,
                meta={"task_key": attempt["task_key"], "attempt": attempt["attempt"]},  # a click opens the attempt
            )
        )
        if span > 0 and seconds < span * NARROW_SHARE:
            figure.add_trace(
                go.Scatter(
                    x=[claimed],
                    y=[attempt["task_key"]],
                    mode="markers",
                    marker={"color": color, "symbol": "line-ns", "size": 16, "line": {"color": color, "width": 3}},
                    name=f"{label} (short)",
                    hovertemplate=hover,
                    meta={"task_key": attempt["task_key"], "attempt": attempt["attempt"]},
                )
            )
    running = any(attempt["finished_at"] is None for attempt, _ in extents)
    now_line = [
        {"type": "line", "x0": now, "x1": now, "yref": "paper", "y0": 0, "y1": 1, "name": "now",
         "line": {"color": "#E5484D", "width": 1.5, "dash": "dot"}}
    ] if running else []  # fmt: skip
    figure.update_layout(
        **_base_layout(
            90 + 36 * max(len(order), 1),
            shapes=now_line,
            dragmode="pan",  # drag pans along time; the wheel zooms (the page's plot config)
            barmode="overlay",
            xaxis={"type": "date", "showgrid": True, "gridcolor": "rgba(128,128,128,0.18)"},
            yaxis={"categoryorder": "array", "categoryarray": list(reversed(order)), "automargin": True},
            margin={"l": 10, "r": 16, "t": 6, "b": 30},
        )
    )
    return figure


def pool_load_figure(series: Sequence[dict[str, Any]]) -> go.Figure:
    """Peak running tasks per pool in each minute, one bar colour per pool (stacked)."""
    figure = go.Figure()
    pools = sorted({row["pool"] for row in series})
    for index, pool in enumerate(pools):
        points = [row for row in series if row["pool"] == pool]
        figure.add_trace(
            go.Bar(
                x=[row["at"] for row in points],
                y=[row["running"] for row in points],
                name=pool,
                marker={"color": POOL_COLORS[index % len(POOL_COLORS)]},
                hovertemplate=f"<b>{pool}</b><br>%{{x|%H:%M}} UTC · peak %{{y}} running<extra></extra>",
            )
        )
    figure.update_layout(
        **_base_layout(
            200,
            showlegend=True,
            barmode="stack",
            bargap=0.15,
            legend={"orientation": "h", "y": 1.15, "x": 0},
            xaxis={"type": "date", "showgrid": False, "tickformat": "%H:%M"},
            yaxis={"rangemode": "tozero", "gridcolor": "rgba(128,128,128,0.18)", "tickformat": "d"},
            margin={"l": 36, "r": 10, "t": 30, "b": 28},
        )
    )
    return figure
