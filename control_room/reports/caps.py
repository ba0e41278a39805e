"""`lakehouse caps report`: each cap against its recorded usage (ops.cap_usage) over a period.

Per cap (one scope: org, project, environment, pool or engine): runs, compute-seconds, peak
concurrency, longest runtime, scanned bytes and breaches over the period, the day that used most of
the cap's own kind, and that use as a share of the limit. Markdown for people, CSV for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from control_room.services import caps_report

# Which usage column measures each kind of cap, and whether the limit is per day ("daily": the
# busiest day is compared) or a ceiling on single values (peak concurrency, longest runtime).
_MEASURE: dict[str, str] = {
    "concurrent_tasks": "peak_concurrency",
    "runs_per_day": "runs",
    "compute_seconds_per_day": "compute_seconds",
    "max_runtime_s": "max_runtime_s",
    # scanned_bytes_per_query is not here: usage records bytes per day, not per query, so the
    # report shows the total scanned but no share of a per-query limit.
}
NEAR_LIMIT = 0.8


@dataclass(frozen=True)
class CapUsageRow:
    """One cap and its usage over the period."""

    cap_id: uuid.UUID
    name: str
    scope: str
    scope_name: str
    kind: str
    limit: int
    enabled: bool
    days_with_usage: int
    runs: int
    compute_seconds: float
    peak_concurrency: int
    max_runtime_s: float
    scanned_bytes: int
    breaches: int
    peak: float | None  # the measure of the cap's own kind (busiest day for per-day caps)
    peak_day: date | None

    @property
    def utilisation(self) -> float | None:
        """``peak`` as a share of the limit (None for kinds usage does not measure, or a zero limit)."""
        if self.peak is None or self.limit <= 0:
            return None
        return self.peak / self.limit

    @property
    def status(self) -> str:
        """breached (a breach was recorded), near (>= 80 % of the limit), ok, idle or disabled."""
        if not self.enabled:
            return "disabled"
        if self.breaches:
            return "breached"
        share = self.utilisation
        if share is not None and share >= NEAR_LIMIT:
            return "near"
        return "ok" if self.days_with_usage else "idle"


def _scope_name(row: dict[str, Any]) -> str:
    scope = row["scope"]
    if scope == "project":
        return str(row["project"])
    if scope == "environment":
        return f"{row['env_project']}/{row['environment']}"
    if scope == "pool":
        return str(row["pool"])
    if scope == "engine":
        return str(row["engine"])
    return "(org)"


def caps_usage(conn: psycopg.Connection[Any], *, org: str, start: date, end: date) -> list[CapUsageRow]:
    """Every cap of ``org`` with its usage from ``start`` to ``end`` (both included)."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    if not caps_report.org_exists(conn, org=org):
        raise LookupError(f'org "{org}" does not exist')
    rows: list[CapUsageRow] = []
    for row in caps_report.usage_by_cap(conn, org=org, start=start, end=end):
        measure = _MEASURE.get(row["kind"])
        peak: float | None = None
        peak_day: date | None = None
        if measure is not None and row["days"]:
            busiest = {
                "runs": row["busiest_runs"],
                "compute_seconds": row["busiest_compute_seconds"],
                "scanned_bytes": row["busiest_scanned_bytes"],
                "peak_concurrency": row["peak_concurrency"],
                "max_runtime_s": row["max_runtime_s"],
            }[measure]
            peak = float(busiest)
            peak_day = caps_report.busiest_day(conn, cap_id=row["id"], measure=measure, start=start, end=end)
        rows.append(
            CapUsageRow(
                cap_id=row["id"],
                name=row["name"],
                scope=row["scope"],
                scope_name=_scope_name(row),
                kind=row["kind"],
                limit=int(row["limit_value"]),
                enabled=bool(row["enabled"]),
                days_with_usage=int(row["days"]),
                runs=int(row["runs"]),
                compute_seconds=float(row["compute_seconds"]),
                peak_concurrency=int(row["peak_concurrency"]),
                max_runtime_s=float(row["max_runtime_s"]),
                scanned_bytes=int(row["scanned_bytes"]),
                breaches=int(row["breaches"]),
                peak=peak,
                peak_day=peak_day,
            )
        )
    return rows


CSV_COLUMNS = (
    "cap",
    "scope",
    "scope_name",
    "kind",
    "limit",
    "enabled",
    "days_with_usage",
    "runs",
    "compute_seconds",
    "peak_concurrency",
    "max_runtime_s",
    "scanned_bytes",
    "breaches",
    "peak",
    "peak_day",
    "utilisation",
    "status",
)


def render_csv(rows: list[CapUsageRow]) -> str:
    """One CSV line per cap (header first); numbers unformatted, utilisation as a fraction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r.name,
                r.scope,
                r.scope_name,
                r.kind,
                r.limit,
                str(r.enabled).lower(),
                r.days_with_usage,
                r.runs,
                round(r.compute_seconds, 3),
                r.peak_concurrency,
                round(r.max_runtime_s, 3),
                r.scanned_bytes,
                r.breaches,
                "" if r.peak is None else round(r.peak, 3),
                r.peak_day.isoformat() if r.peak_day else "",
                "" if r.utilisation is None else round(r.utilisation, 4),
                r.status,
            ]
        )
    return buffer.getvalue()


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _amount(kind: str, value: float) -> str:
    if kind.endswith("_bytes_per_query") or kind == "max_output_bytes":
        return _bytes(value)
    if kind.endswith("_s") or "seconds" in kind:
        return f"{value:,.0f} s"
    return f"{value:,.0f}"


_STATUS_LABEL = {"breached": "❌ breached", "near": "⚠️ near", "ok": "✅ ok", "idle": "idle", "disabled": "disabled"}


def render_markdown(rows: list[CapUsageRow], *, org: str, start: date, end: date) -> str:
    """The report as Markdown: a summary line, then one table row per cap grouped by scope."""
    breached = sum(1 for r in rows if r.status == "breached")
    near = sum(1 for r in rows if r.status == "near")
    lines = [
        f"# Caps report: org {org}, {start.isoformat()} to {end.isoformat()}",
        "",
        f"{len(rows)} cap(s): {breached} breached, {near} at {NEAR_LIMIT:.0%} or more of the limit.",
        "",
        "| Scope | Cap | Kind | Limit | Peak (day) | Use | Runs | Compute | Peak concurrency | Longest runtime "
        "| Scanned | Breaches | Status |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        peak = (
            "—" if r.peak is None else _amount(r.kind, r.peak) + (f" ({r.peak_day.isoformat()})" if r.peak_day else "")
        )
        use = "—" if r.utilisation is None else f"{r.utilisation:.0%}"
        lines.append(
            f"| {r.scope} {r.scope_name} | {r.name} | {r.kind} | {_amount(r.kind, r.limit)} | {peak} | {use} "
            f"| {r.runs:,} | {r.compute_seconds:,.0f} s | {r.peak_concurrency} | {r.max_runtime_s:,.0f} s "
            f"| {_bytes(r.scanned_bytes)} | {r.breaches} | {_STATUS_LABEL[r.status]} |"
        )
    if not rows:
        lines.append("| — | no caps are configured | | | | | | | | | | | |")
    return "\n".join(lines) + "\n"
