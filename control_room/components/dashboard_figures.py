"""Plotly figures of dashboard charts (bar, line, area, scatter, pie, histogram) drawn from a dataset's rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import plotly.graph_objects as go

from control_room.components.figures import base_layout
from control_room.components.status import STATUS_HEX

GRID = "rgba(128,128,128,0.18)"
PALETTE = ("#3E63DD", "#E5484D", "#30A46C", "#F76B15", "#8E4EC6", "#12A594", "#FFC53D", "#D6409F")
CHART_HEIGHT = 280
LABEL_CHARS = 18  # longest category tick label drawn in full


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


GRAINS = ("hour", "day", "week", "month")
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# Tick and hover labels per time grain: a month bucket reads "2026-03", never "Mar 1, 2026" with a midnight tick.
GRAIN_FORMAT = {"hour": "%b %d %H:%M", "day": "%b %d", "week": "%b %d", "month": "%Y-%m"}
GRAIN_PAD = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7),
             "month": timedelta(days=16)}  # fmt: skip
MAX_TICKS = 16


def _moment(value: Any) -> datetime | None:
    """A time bucket's start: an ISO timestamp or date ("2026-03-01T00:00:00+00:00", "2026-03-01") or a month
    ("2026-03", as DuckDB's strftime('%Y-%m') gives it)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    if len(value) == 7 and value[4] == "-" and value[:4].isdigit() and value[5:].isdigit():
        return datetime(int(value[:4]), int(value[5:]), 1) if 1 <= int(value[5:]) <= 12 else None
    if len(value) >= 10 and value[4] == "-" and value[7] == "-":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def time_grain(xs: list[Any], declared: str | None = None) -> str | None:
    """The bucket of an x column of times: the dataset's declared ``time_grain``, else read from the values
    (not times: None). Midnights one month apart on the 1st are months; midnights a whole number of weeks
    apart on one weekday are weeks; other midnights are days; anything else is hours."""
    moments = [_moment(x) for x in xs]
    if not xs or any(m is None for m in moments):
        return None
    if declared in GRAINS:
        return declared
    if any(isinstance(x, str) and len(x) == 7 for x in xs):
        return "month"
    found = sorted({m for m in moments if m is not None})
    if any((m.hour, m.minute, m.second, m.microsecond) != (0, 0, 0, 0) for m in found):
        return "hour"
    gaps = [(b - a).days for a, b in pairwise(found)]
    if gaps and all(m.day == 1 for m in found) and all(gap >= 28 for gap in gaps):
        return "month"
    if gaps and all(gap % 7 == 0 for gap in gaps):
        return "week"
    return "day"


def _iso(value: Any) -> Any:
    moment = _moment(value)
    return moment.isoformat() if moment is not None else value


def _bucket_labels(columns: list[str], rows: list[list[Any]], x: str | None, grain: str | None) -> list[list[Any]]:
    """Bars over time buckets as labels of their grain ("Dec 04", "2026-03"): plotly draws a lone bar on a
    date axis zero pixels wide, so bars stand on a category axis."""
    if grain is None or x is None or x not in columns:
        return rows
    index = columns.index(x)
    shape = GRAIN_FORMAT[grain]
    labelled = []
    for row in rows:
        moment = _moment(row[index])
        label = moment.strftime(shape) if moment is not None else row[index]
        labelled.append([*row[:index], label, *row[index + 1 :]])
    return labelled


def _dtick(grain: str, span: timedelta) -> int | str:
    """One tick per bucket while that stays readable (at most MAX_TICKS), else a round multiple of it."""
    if grain == "month":
        months = span.days // 28 + 1
        return next((f"M{step}" for step in (1, 2, 3, 6) if months / step <= MAX_TICKS), "M12")
    if grain in ("day", "week"):
        days = span.days + 1
        steps = (1, 2, 7, 14, 28) if grain == "day" else (7, 14, 28)
        return next((step for step in steps if days / step <= MAX_TICKS), 91) * DAY_MS
    hours = span.total_seconds() / 3600 + 1
    return next((step for step in (1, 2, 3, 6, 12, 24) if hours / step <= MAX_TICKS), 48) * HOUR_MS


def _short_ticks(xs: list[Any]) -> dict[str, Any]:
    """Category ticks cut to LABEL_CHARS with an ellipsis when a label is longer: plotly gives long labels (a job's
    name) most of the chart's height. The full value stays the point's x, in the hover and for cross-filters."""
    labels = list(dict.fromkeys(x for x in xs if isinstance(x, str)))
    if all(len(label) <= LABEL_CHARS for label in labels):
        return {}
    short = [label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1].rstrip() + "…" for label in labels]
    return {"tickmode": "array", "tickvals": labels, "ticktext": short}


def _x_axis(xs: list[Any], grain: str | None, *, kind: str) -> dict[str, Any]:
    """A time axis formatted by its grain (tick format, one tick per bucket, hover); a lone bucket gets its
    grain's width either side, so plotly does not zoom to milliseconds. Bars stand on categories instead."""
    axis: dict[str, Any] = {"showgrid": False, "automargin": True}
    if grain is None:
        return axis | _short_ticks(xs)
    if kind in ("bar", "histogram"):
        axis["type"] = "category"  # their labels are already the grain's ("2026-03" would read as a date)
        return axis
    moments = sorted({m for m in (_moment(x) for x in xs) if m is not None})
    axis.update(type="date", tickformat=GRAIN_FORMAT[grain], hoverformat=GRAIN_FORMAT[grain])
    if grain == "week":
        axis["tick0"] = moments[0].isoformat()  # ticks on the weeks' first days
    axis["dtick"] = _dtick(grain, moments[-1] - moments[0])
    if len(moments) == 1:
        pad = GRAIN_PAD[grain]
        axis["range"] = [(moments[0] - pad).isoformat(), (moments[0] + pad).isoformat()]
    return axis


def chart_figure(
    kind: str,
    columns: list[str],
    rows: list[list[Any]],
    *,
    x: str | None,
    y: list[str],
    color: str | None,
    grain: str | None = None,
    clickable: bool = False,
) -> go.Figure:
    """One chart's figure; a missing column draws nothing rather than failing the dashboard. ``grain`` is the
    dataset's declared time grain of ``x`` (hour, day, week, month); read from the values when not given.
    ``clickable`` (a chart that cross-filters): hovering anywhere over an x value picks it, so a click on a
    short bar, or between two series' bars, still sets the filter."""
    figure = go.Figure()
    grain = time_grain(_column(columns, rows, x), grain) if kind != "pie" else None
    if kind in ("bar", "histogram"):
        rows = _bucket_labels(columns, rows, x, grain)
    elif grain is not None and x is not None:
        index = columns.index(x)
        rows = [[*row[:index], _iso(row[index]), *row[index + 1 :]] for row in rows]
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
            hovermode="x" if clickable and kind != "pie" else "closest",
            xaxis=_x_axis(_column(columns, rows, x), grain, kind=kind),
            yaxis={"rangemode": "tozero", "gridcolor": GRID, "automargin": True},
            margin={"l": 40, "r": 10, "t": 30, "b": 30},
        )
    )
    return figure
