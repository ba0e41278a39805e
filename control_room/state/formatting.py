"""How values are shown in the UI: durations, sizes, times (UTC) and short ids."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any


def duration(seconds: float | None) -> str:
    """``850 ms``, ``42 s``, ``3m 05s``, ``2h 04m``, ``3d 02h``; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def between(start: datetime | None, end: datetime | None, *, now: datetime | None = None) -> str:
    """Duration from ``start`` to ``end`` (or to now while still going)."""
    if start is None:
        return ""
    return duration(((end or now or datetime.now(UTC)) - start).total_seconds())


def timestamp(value: datetime | None) -> str:
    """``2026-05-01 12:03:04`` in UTC; empty when unknown."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


# An instant as a query result carries it in JSON (``datetime.isoformat()``): date, "T", then the time.
ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def cell_text(value: object) -> str:
    """One cell of a query result as a table shows it: empty for null, an instant with a time zone as
    ``2026-05-01 12:03:04 UTC`` (an ISO text such as ``2026-05-01T12:03:04.123456+00:00`` is hard to read)."""
    if value is None:
        return ""
    text = str(value)
    if not ISO_INSTANT.match(text):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return f"{timestamp(moment)} UTC" if moment.tzinfo else moment.strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str:
    """An ISO 8601 instant for the browser to show in its time zone; empty when unknown."""
    return value.astimezone(UTC).isoformat() if value else ""


def clock(value: datetime | None) -> str:
    """``12:03:04.123`` in UTC, for event rows."""
    return value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] if value else ""


def ago(seconds: float | None) -> str:
    """``4 s ago``, ``3 min ago``, ``2 h ago``, ``5 d ago``; ``never`` when unknown."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def size(num_bytes: int) -> str:
    """``512 B``, ``1.2 KB``, ``3.4 MB``, ``1.1 GB`` (powers of 1024)."""
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{num_bytes} B"


def short_id(value: Any) -> str:
    """The first 8 characters of a uuid, as shown in tables."""
    return str(value)[:8]


def pretty_json(value: Any) -> str:
    """Indented JSON for display."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def scalar(value: Any) -> str:
    """A parameter value on one line (strings unquoted, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)
