"""The lineage graph as a plotly figure: every edge in one SVG path (a layout shape), a highlighted
column path as a line trace, datasets and jobs as marker traces coloured by freshness or by the last
run's outcome.

SVG, not WebGL (``scattergl``): at 5,000 datasets and 10,000 edges Chromium without a GPU (headless,
VMs, remote desktops: software WebGL) drew the WebGL figure in 2.6 s and zoomed it in 0.8-3.5 s; the
SVG one draws in 0.3-0.7 s and zooms in 0.2-0.5 s (``bench/lineage.py browser``). The edges cost most
as a WebGL line trace and almost nothing as one path: 10,000 segments are one DOM node, never hovered.
Coordinates are rounded to what a screen shows (a smaller payload). Labels are drawn only while the
view is small enough to read them; hovering names any node. Traces are plain dicts with numpy arrays,
handed to plotly without its per-element validation (``_validate=False``; validating and copying Python
lists took 3.5 s of the 5,000-node figure); tests build the same figure validated.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import plotly.graph_objects as go

from control_room.components.figures import FONT
from control_room.components.status import STATUS_HEX
from control_room.services.lineage_graph import Node, View

# Trace order, so a click's curveNumber says which list its pointIndex is in.
DATASET_CURVE = 1
JOB_CURVE = 2
EDGE_COLOR = "#B9BBC6"
LABELS_UP_TO = 250
FRESHNESS = (
    (timedelta(days=1), "#46A758", "updated in the last day"),
    (timedelta(days=7), "#FFC53D", "updated in the last week"),
    (timedelta.max, "#E5484D", "older"),
)
UNKNOWN = "#8B8D98"
# OpenLineage event types as run outcomes.
EVENT_OUTCOME = {"COMPLETE": "succeeded", "FAIL": "failed", "ABORT": "cancelled", "START": "running",
                 "RUNNING": "running"}  # fmt: skip
COLOR_MODES = ("freshness", "outcome")


def node_color(node: Node, mode: str, now: datetime) -> str:
    """A node's colour: its age since the last write, or the outcome of the run that last wrote it."""
    if mode == "outcome":
        outcome = EVENT_OUTCOME.get(node.outcome or "", node.outcome or "")
        return STATUS_HEX.get(outcome, UNKNOWN)
    if node.updated_at is None:
        return UNKNOWN
    age = now - node.updated_at
    return next(color for limit, color, _ in FRESHNESS if age < limit)


def legend(mode: str) -> list[tuple[str, str]]:
    """(colour, meaning) pairs for the page's legend."""
    if mode == "outcome":
        return [(STATUS_HEX[s], s) for s in ("succeeded", "failed", "running", "cancelled")] + [(UNKNOWN, "unknown")]
    return [(color, meaning) for _, color, meaning in FRESHNESS]


def short_labels(nodes: Collection[Node]) -> dict[str, str]:
    """A node's name without its database and schema (``main.stg_orders`` -> ``stg_orders``), a file's or
    lake table's without its folder (``/lake/orders.parquet`` -> ``orders.parquet``), unless another node
    drawn beside it would then read the same; then the whole name."""
    short = {n.id: n.name.rstrip("/").rsplit("/", 1)[-1] if "/" in n.name else n.name.rsplit(".", 1)[-1]
             for n in nodes}  # fmt: skip
    counts: dict[str, int] = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {n.id: short[n.id] if counts[short[n.id]] == 1 else n.name for n in nodes}


def _segments(
    edges: Collection[tuple[str, str]], positions: dict[str, tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Edge segments as one line trace's x and y, each segment ended by a gap (NaN: null in the JSON)."""
    xs = np.full(3 * len(edges), np.nan)
    ys = np.full(3 * len(edges), np.nan)
    for index, (up, down) in enumerate(edges):
        (xs[3 * index], ys[3 * index]), (xs[3 * index + 1], ys[3 * index + 1]) = positions[up], positions[down]
    return xs, ys


def _point(position: tuple[float, float]) -> str:
    return f"{round(position[0], 2)},{round(position[1], 2)}"


def edge_path(edges: Collection[tuple[str, str]], positions: dict[str, tuple[float, float]]) -> str:
    """Every edge as one SVG path (``M up L down`` per edge): drawn as a single layout shape."""
    points = {node: _point(position) for node, position in positions.items()}
    return "".join(f"M{points[up]}L{points[down]}" for up, down in edges)


def _markers(nodes: list[Node], view: View, *, mode: str, now: datetime, symbol: str, on_path: set[str],
             focus: str | None) -> dict[str, Any]:  # fmt: skip
    labels = len(view.nodes) <= LABELS_UP_TO
    marked = {n.id for n in nodes if n.id == focus or n.id in on_path}
    # Per-marker sizes and outlines only where some marker stands out: the whole graph of a large project
    # sends one value for all (a smaller payload, and plotly draws it faster).
    size: Any = 12
    # Without labels the layers are dense columns of markers: a white outline would hide their colours.
    outline: Any = {"color": "rgba(255,255,255,0.9)", "width": 1.5 if labels else 0}
    if marked:
        size = np.array([22 if n.id == focus else 16 if n.id in on_path else 12 for n in nodes], dtype=float)
        outline = {
            "color": ["#1F2D5C" if n.id in marked else "rgba(255,255,255,0.9)" for n in nodes],
            "width": np.array([3 if n.id in on_path else 1.5 for n in nodes], dtype=float),
        }
    trace: dict[str, Any] = dict(
        type="scatter",
        x=np.array([view.positions[n.id][0] for n in nodes], dtype=float).round(2),
        y=np.array([view.positions[n.id][1] for n in nodes], dtype=float).round(2),
        mode="markers+text" if labels else "markers",
        hovertext=[f"<b>{n.name}</b><br>{n.subtype} · {n.namespace}<br>{n.outcome or 'no run'}" for n in nodes],
        hoverinfo="text",
        marker={"size": size, "color": [node_color(n, mode, now) for n in nodes], "symbol": symbol, "line": outline},
    )
    if labels:
        labels_of = short_labels(view.nodes)
        trace.update(text=[labels_of[n.id] for n in nodes], textposition="bottom center")
    return trace


def lineage_figure(
    view: View,
    *,
    mode: str = "freshness",
    focus: str | None = None,
    highlight: Collection[tuple[str, str]] = (),
    on_path: Collection[str] = (),
    now: datetime | None = None,
    validate: bool = False,
) -> go.Figure:
    """The drawn graph, left (upstream) to right (downstream); ``validate`` checks every value (tests)."""
    now = now or datetime.now(UTC)
    shown = set(view.positions)
    lit = [edge for edge in highlight if edge[0] in shown and edge[1] in shown]
    path = set(on_path) & shown
    lit_x, lit_y = _segments(lit, view.positions)
    datasets = [n for n in view.nodes if n.kind == "dataset"]
    jobs = [n for n in view.nodes if n.kind == "job"]
    traces: list[dict[str, Any]] = [
        dict(type="scatter", x=lit_x, y=lit_y, mode="lines", line={"color": "#3E63DD", "width": 4},
             hoverinfo="skip"),
    ]  # fmt: skip
    for nodes, symbol in ((datasets, "circle"), (jobs, "diamond")):
        traces.append(_markers(nodes, view, mode=mode, now=now, symbol=symbol, on_path=path, focus=focus))
    edges = {"type": "path", "path": edge_path(view.edges, view.positions), "layer": "below",
             "line": {"color": EDGE_COLOR, "width": 1}}  # fmt: skip
    xs = [p[0] for p in view.positions.values()] or [0.0]
    ys = [p[1] for p in view.positions.values()] or [0.0]
    layers = max(xs) - min(xs) + 1
    tallest = max(ys) - min(ys) + 1
    axis = {"visible": False}
    layout = dict(
        height=int(min(max(260, 46 * tallest + 80), 760)),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font=FONT,
        showlegend=False,
        shapes=[edges] if view.edges else [],
        dragmode="pan",
        hovermode="closest",
        xaxis={**axis, "range": [min(xs) - 0.5, max(xs) + 0.5] if layers <= 12 else None},
        yaxis={**axis, "range": [min(ys) - 0.8, max(ys) + 0.8] if tallest <= 14 else None},
    )
    return go.Figure(data=traces, layout=layout, _validate=validate)
