"""Plotly figures of the ML pages: a metric's curve per step for several MLflow runs, overlaid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from control_room.components.figures import POOL_COLORS, base_layout


def metric_curves_figure(
    curves: Mapping[str, Sequence[tuple[int, float]]], names: Mapping[str, str], metric: str, *, height: int = 280
) -> go.Figure:
    """One line per run (step on x, ``metric`` on y), with a legend naming the runs."""
    figure = go.Figure()
    for index, (run_id, points) in enumerate(curves.items()):
        figure.add_trace(
            go.Scatter(
                x=[step for step, _ in points], y=[value for _, value in points], mode="lines+markers",
                name=names.get(run_id, run_id[:8]), line={"color": POOL_COLORS[index % len(POOL_COLORS)], "width": 2},
                hovertemplate=f"%{{fullData.name}}<br>step %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(
        **base_layout(height, showlegend=True, margin={"l": 50, "r": 10, "t": 10, "b": 40}),
        legend={"orientation": "h", "y": -0.25},
        xaxis={"title": {"text": "step"}, "gridcolor": "rgba(128,128,128,0.15)", "dtick": 1},
        yaxis={"title": {"text": metric}, "gridcolor": "rgba(128,128,128,0.15)"},
    )
    return figure
