"""Caps as the governance pages, the API and the CLI configure them: each cap with its live usage, the layer
that enforces it and its recent refusals; the caps that apply to a task and the tightest of each kind; and
saving or deleting a cap (admins, checked and audited in SQL by ops.save_cap / ops.delete_cap).

Caps are validated with the GitOps bundle's own ``Cap`` model, so a cap saved here exports and deploys as is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import ValidationError

from control_room.bundle.models import Cap
from control_room.bundle.source import format_path
from control_room.services.errors import Invalid, NotFound

SCOPES = ("org", "project", "environment", "pool", "engine")
KINDS = (
    "concurrent_tasks", "max_runtime_s", "runs_per_day", "compute_seconds_per_day", "scanned_bytes_per_query",
    "max_memory_mb", "max_cores", "max_output_bytes",
)  # fmt: skip
# Where each kind is enforced: submit (ops.submit_run refuses the run), claim (ops.claim_tasks leaves the
# task queued), agent (the executor stops or limits the process) or engine (the engine refuses the query).
LAYER = {
    "concurrent_tasks": "claim",
    "compute_seconds_per_day": "claim",
    "runs_per_day": "submit",
    "max_runtime_s": "agent",
    "max_memory_mb": "agent",
    "max_cores": "agent",
    "max_output_bytes": "agent",
    "scanned_bytes_per_query": "engine",
}
UNIT = {
    "concurrent_tasks": "tasks", "compute_seconds_per_day": "s/day", "runs_per_day": "runs/day",
    "max_runtime_s": "s", "max_memory_mb": "MB", "max_cores": "cores", "max_output_bytes": "bytes",
    "scanned_bytes_per_query": "bytes/query",
}  # fmt: skip


@dataclass(frozen=True)
class CapView:
    """A cap with its scope in words, live usage against its limit, enforcing layer and refusals."""

    id: str
    name: str
    scope: str
    target: str  # "lakehouse/prod", "pool etl", "engine spark", "whole org"
    project: str
    environment: str
    pool: str
    engine: str
    kind: str
    limit: int
    enabled: bool
    layer: str
    used: float | None  # None: the kind is a per-task ceiling with no running total
    used_label: str
    percent: int
    waiting: int  # queued tasks in scope while a concurrency cap is full
    waiting_reason: str
    refusals_today: int
    refusals_7d: int
    last_refusal_day: str


def _usage(row: dict[str, Any]) -> tuple[float | None, str]:
    kind = row["kind"]
    if kind == "concurrent_tasks":
        return float(row["running"]), f"{row['running']} running"
    if kind == "runs_per_day":
        return float(row["runs_today"]), f"{row['runs_today']} runs today"
    if kind == "compute_seconds_per_day":
        return float(row["compute_seconds_today"]), f"{round(row['compute_seconds_today'])} s today"
    if kind == "max_runtime_s":
        return float(row["max_runtime_s_today"]), f"longest today {round(row['max_runtime_s_today'])} s"
    return None, "per task: enforced when it runs"


def waiting_reason(scope: str) -> str:
    """Why a queued task in a full concurrency cap's scope waits (the words the pages show)."""
    return f"{'org' if scope == 'org' else scope} at its concurrency cap"


async def list_caps(conn: AsyncConnection, *, org_id: uuid.UUID) -> list[CapView]:
    """Every cap of the org with its live usage, in scope order then name."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select c.*, p.slug as project, ep.slug as env_project, e.name as environment_name, u.* "
            "from ops.caps c join ops.cap_usage_now(%s) u on u.cap_id = c.id "
            "left join ops.projects p on p.id = c.project_id "
            "left join ops.environments e on e.id = c.environment_id "
            "left join ops.projects ep on ep.id = e.project_id "
            "order by array_position(array['org', 'project', 'environment', 'pool', 'engine'], c.scope), c.name",
            (org_id,),
        )
        rows = await cur.fetchall()
    views = []
    for row in rows:
        used, label = _usage(row)
        limit = int(row["limit_value"])
        project = row["project"] or row["env_project"] or ""
        environment = row["environment_name"] or ""
        target = {
            "org": "whole org",
            "project": f"project {project}",
            "environment": f"{project}/{environment}",
            "pool": f"pool {row['pool']}",
            "engine": f"engine {row['engine']}",
        }[row["scope"]]
        full = row["kind"] == "concurrent_tasks" and row["enabled"] and used is not None and used >= limit
        views.append(
            CapView(
                id=str(row["id"]),
                name=row["name"],
                scope=row["scope"],
                target=target,
                project=project,
                environment=environment,
                pool=row["pool"] or "",
                engine=row["engine"] or "",
                kind=row["kind"],
                limit=limit,
                enabled=row["enabled"],
                layer=LAYER[row["kind"]],
                used=used,
                used_label=label,
                percent=min(100, round(100 * used / limit)) if used is not None and limit else (100 if used else 0),
                waiting=int(row["queued"]) if full else 0,
                waiting_reason=waiting_reason(row["scope"]) if full and row["queued"] else "",
                refusals_today=int(row["breaches_today"]),
                refusals_7d=int(row["breaches_7d"]),
                last_refusal_day=row["last_breach_day"].isoformat() if row["last_breach_day"] else "",
            )
        )
    return views


@dataclass(frozen=True)
class TaskScope:
    """What decides which caps apply to a task: its project, environment, pool (after routing) and engine."""

    project: str
    environment: str
    pool: str
    engine: str


def applies(cap: CapView, task: TaskScope) -> bool:
    """Whether the cap limits the task (as ops.cap_applies decides)."""
    if not cap.enabled:
        return False
    return {
        "org": True,
        "project": cap.project == task.project,
        "environment": (cap.project, cap.environment) == (task.project, task.environment),
        "pool": cap.pool == task.pool,
        "engine": cap.engine == task.engine,
    }[cap.scope]


def effective(caps: Sequence[CapView], task: TaskScope) -> list[tuple[CapView, bool]]:
    """The caps that apply to the task, each with whether it is the tightest of its kind (lowest limit)."""
    matching = [c for c in caps if applies(c, task)]
    tightest = {kind: min(c.limit for c in matching if c.kind == kind) for kind in {c.kind for c in matching}}
    out, seen = [], set()
    for cap in sorted(matching, key=lambda c: (KINDS.index(c.kind), c.limit, c.name)):
        is_tightest = cap.limit == tightest[cap.kind] and cap.kind not in seen
        if is_tightest:
            seen.add(cap.kind)
        out.append((cap, is_tightest))
    return out


@dataclass(frozen=True)
class CapDraft:
    """A cap as the editor holds it (``id`` "" for a new one); names project and environment by slug and name."""

    name: str
    scope: str
    kind: str
    limit: int
    project: str = ""
    environment: str = ""
    pool: str = ""
    engine: str = ""
    enabled: bool = True
    id: str = ""

    def as_bundle_cap(self) -> Cap:
        """The bundle item; raises ``Invalid`` naming the field the bundle would refuse."""
        data: dict[str, Any] = {"name": self.name, "scope": self.scope, "kind": self.kind, "limit": self.limit,
                                "enabled": self.enabled}  # fmt: skip
        if self.scope in ("project", "environment"):
            data["project"] = self.project or None
        if self.scope == "environment":
            data["environment"] = self.environment or None
        if self.scope == "pool":
            data["pool"] = self.pool or None
        if self.scope == "engine":
            data["engine"] = self.engine or None
        try:
            return Cap.model_validate({k: v for k, v in data.items() if v is not None})
        except ValidationError as exc:
            error = exc.errors()[0]
            path = format_path([p for p in error["loc"] if isinstance(p, str | int)]) or "scope"
            raise Invalid(f"{path}: {error['msg']}", field=path) from exc


async def save_cap(conn: AsyncConnection, *, org_id: uuid.UUID, draft: CapDraft, by: str | None) -> uuid.UUID:
    """Create or update a cap (admins; checked and audited in SQL). Returns its id."""
    draft.as_bundle_cap()
    project_id = environment_id = None
    if draft.scope in ("project", "environment"):
        cur = await conn.execute("select id from ops.projects where org_id = %s and slug = %s", (org_id, draft.project))
        row = await cur.fetchone()
        if row is None:
            raise Invalid(f'project "{draft.project}" is not a project of this org that you can see', field="project")
        project_id = row[0]
    if draft.scope == "environment":
        cur = await conn.execute(
            "select id from ops.environments where project_id = %s and name = %s", (project_id, draft.environment)
        )
        row = await cur.fetchone()
        if row is None:
            raise Invalid(f'project "{draft.project}" has no environment "{draft.environment}"', field="environment")
        environment_id = row[0]
    cur = await conn.execute(
        "select ops.save_cap(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (org_id, draft.id or None, draft.name, draft.scope, project_id, environment_id, draft.pool or None,
         draft.engine or None, draft.kind, draft.limit, draft.enabled, by),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def delete_cap(conn: AsyncConnection, *, cap_id: uuid.UUID, by: str | None) -> None:
    """Delete a cap and its usage history (admins; audited in SQL)."""
    await conn.execute("select ops.delete_cap(%s, %s)", (cap_id, by))


async def cap_id_by_name(conn: AsyncConnection, *, org_id: uuid.UUID, name: str) -> uuid.UUID:
    """The id of the org's cap of this name; NotFound naming the caps there are."""
    cur = await conn.execute("select id from ops.caps where org_id = %s and name = %s", (org_id, name))
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute("select name from ops.caps where org_id = %s order by name", (org_id,))
        names = ", ".join(r[0] for r in await cur.fetchall()) or "none"
        raise NotFound(f'no cap named "{name}" (caps: {names})', field="name")
    return uuid.UUID(str(row[0]))
