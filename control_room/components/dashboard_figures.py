"""Plotly figures of dashboard charts (bar, line, area, scatter, pie, histogram) drawn from a dataset's rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from control_room.components.figures import base_layout
from control_room.components.status import STATUS_HEX

GRID = "rgba(128,128,128,0.18)"
PALETTE = ("#3E63DD", "#E5484D", "#30A46C", "#F76B15", "#8E4EC6", "#12A594", "#FFC53D", "#D6409F")
CHART_HEIGHT = 280


def _column(columns: list[str], rows: list[list[Any]], name: str | None) -> list[Any]:
    if name is None or name not in columns:
        return []
    index = columns.index(name)
    return [row[index] for row in rows]


def _series(
    columns: list[str], rows: list[list[Any]], x: str | None, y: list[str], color: str | None
) -> list[tuple[str, list[Any], list[Any]]]:
    """(name, xs, ys) per drawn series: one per y column, or one per value of the colour column."""
    xs = _column(columns, rows, x)
    if color is not None and color in columns and y:
        groups: dict[str, tuple[list[Any], list[Any]]] = {}
        for x_value, y_value, key in zip(xs, _column(columns, rows, y[0]), _column(columns, rows, color), strict=True):
            bucket = groups.setdefault(str(key), ([], []))
            bucket[0].append(x_value)
            bucket[1].append(y_value)
        return [(name, gx, gy) for name, (gx, gy) in sorted(groups.items())]
    return [(name, xs, _column(columns, rows, name)) for name in y]


def _is_stamp(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-"


def _day_labels(columns: list[str], rows: list[list[Any]], x: str | None) -> list[list[Any]]:
    """Bars over dates as day (or hour) labels: plotly draws a lone bar on a date axis zero pixels wide."""
    if x is None or x not in columns:
        return rows
    index = columns.index(x)
    if not rows or not all(_is_stamp(row[index]) for row in rows):
        return rows
    timed = any(str(row[index])[11:19] not in ("", "00:00:00") for row in rows)
    shape = "%b %d %H:%M" if timed else "%b %d"
    return [[*row[:index], datetime.fromisoformat(str(row[index])).strftime(shape), *row[index + 1 :]] for row in rows]


def _x_axis(xs: list[Any]) -> dict[str, Any]:
    """Dates read as days (or hours when they have a time); a lone timestamp gets an hour either side, so
    plotly does not zoom to milliseconds."""
    axis: dict[str, Any] = {"showgrid": False, "automargin": True}
    stamps = [x for x in xs if _is_stamp(x)]
    if not xs or len(stamps) != len(xs):
        return axis
    timed = any(stamp[11:19] not in ("", "00:00:00") for stamp in stamps)
    axis.update(type="date", tickformat="%b %d %H:%M" if timed else "%b %d")
    if len(set(stamps)) == 1:
        moment = datetime.fromisoformat(stamps[0])
        pad = timedelta(hours=1) if timed else timedelta(days=1)
        axis["range"] = [(moment - pad).isoformat(), (moment + pad).isoformat()]
    if not timed:
        axis["dtick"] = 86_400_000  # one tick a day
    return axis


def chart_figure(
    kind: str, columns: list[str], rows: list[list[Any]], *, x: str | None, y: list[str], color: str | None
) -> go.Figure:
    """One chart's figure; a missing column draws nothing rather than failing the dashboard."""
    figure = go.Figure()
    if kind in ("bar", "histogram"):
        rows = _day_labels(columns, rows, x)
    if kind == "pie":
        labels = _column(columns, rows, x)
        tones = [STATUS_HEX.get(str(label), PALETTE[i % len(PALETTE)]) for i, label in enumerate(labels)]
        figure.add_trace(go.Pie(labels=labels, values=_column(columns, rows, y[0] if y else None),
                                hole=0.45, marker={"colors": tones}, sort=False))  # fmt: skip
    elif kind == "histogram":
        for index, name in enumerate(y or ([x] if x else [])):
            figure.add_trace(go.Histogram(x=_column(columns, rows, name), name=name,
                                          marker={"color": PALETTE[index % len(PALETTE)]}))  # fmt: skip
    else:
        for index, (name, xs, ys) in enumerate(_series(columns, rows, x, y, color)):
            tone = PALETTE[index % len(PALETTE)]
            if kind == "bar":
                figure.add_trace(go.Bar(x=xs, y=ys, name=name, marker={"color": tone}))
            else:
                mode = "markers" if kind == "scatter" else "lines+markers"
                fill = "tozeroy" if kind == "area" else None
                figure.add_trace(go.Scatter(x=xs, y=ys, name=name, mode=mode, fill=fill, line={"color": tone},
                                            stackgroup="one" if kind == "area" and color else None))  # fmt: skip
    figure.update_layout(
        **base_layout(
            CHART_HEIGHT,
            showlegend=kind == "pie" or len(y) > 1 or color is not None,
            legend={"orientation": "h", "y": 1.15, "x": 0},
            barmode="group",
            xaxis=_x_axis(_column(columns, rows, x) if kind != "pie" else []),
            yaxis={"rangemode": "tozero", "gridcolor": GRID, "automargin": True},
            margin={"l": 40, "r": 10, "t": 30, "b": 30},
        )
    )
    return figure
