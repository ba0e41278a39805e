"""Caps as the governance pages, the API and the CLI configure them: each cap with its live usage, the layer
that enforces it and its recent refusals; the caps that apply to a task and the tightest of each kind; and
saving or deleting a cap (admins, checked and audited in SQL by ops.save_cap / ops.delete_cap).

Caps are validated with the GitOps bundle's own ``Cap`` model, so a cap saved here exports and deploys as is.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from control_room.bundle.models import Cap
from control_room.bundle.source import format_path
from control_room.db.rows import dict_rows, returned_id, scalar
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
    recent: tuple[Refusal, ...] = ()  # the last refusals it caused, newest first (ops.cap_refusals)


@dataclass(frozen=True)
class Refusal:
    """Work a cap stopped: a submit refused (no run), a task held in the queue (from when to when), a query
    refused or an attempt stopped (events)."""

    at: datetime
    layer: str  # submit | claim | agent | engine
    run_id: str  # "" for a refused submit: it created no run
    run_name: str  # a refused submit: the name of the run it would have been
    task_key: str
    attempt: int | None
    message: str
    ended_at: datetime | None = None  # a hold: when the task was claimed at last (None: still held)
    principal: str = ""  # who submitted (the run's requester)
    project: str = ""
    environment: str = ""
    repeats: int = 1  # a refused submit repeated within 10 minutes is one row
    key: str = ""  # with ``at``, the keyset position of the row (refusal_page's cursor)


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


async def list_caps(conn: AsyncConnection, *, org_id: uuid.UUID, with_refusals: bool = True) -> list[CapView]:
    """Every cap of the org with its live usage, in scope order then name (and its last refusals, unless
    ``with_refusals`` is False: the simulator and effective caps do not show them)."""
    rows = await dict_rows(
        conn,
        "select c.*, p.slug as project, ep.slug as env_project, e.name as environment_name, u.* "
        "from ops.caps c join ops.cap_usage_now(%s) u on u.cap_id = c.id "
        "left join ops.projects p on p.id = c.project_id "
        "left join ops.environments e on e.id = c.environment_id "
        "left join ops.projects ep on ep.id = e.project_id "
        "order by array_position(array['org', 'project', 'environment', 'pool', 'engine'], c.scope), c.name",
        (org_id,),
    )
    recent = await refusals(conn, org_id=org_id) if with_refusals else {}
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
                recent=tuple(recent.get(str(row["id"]), ())),
            )
        )
    return views


def _refusal(r: dict[str, Any]) -> Refusal:
    return Refusal(
        at=r["at"], layer=r["layer"], run_id=str(r["run_id"] or ""), run_name=r["run_name"], task_key=r["task_key"],
        attempt=r["attempt"], message=r["message"], ended_at=r["ended_at"], principal=r["principal"],
        project=r["project"], environment=r["environment"], repeats=r["repeats"], key=r["key"],
    )  # fmt: skip


async def refusals(conn: AsyncConnection, *, org_id: uuid.UUID, per_cap: int = 5) -> dict[str, list[Refusal]]:
    """The last ``per_cap`` refusals of each cap of the org, by cap id (in the projects the caller can see)."""
    rows = await dict_rows(conn, "select * from ops.cap_refusals(%s, %s)", (org_id, per_cap))
    out: dict[str, list[Refusal]] = {}
    for r in rows:
        out.setdefault(str(r["cap_id"]), []).append(_refusal(r))
    return out


def refusal_cursor(refusal: Refusal) -> str:
    """The cursor of the page after ``refusal`` (opaque to callers)."""
    return base64.urlsafe_b64encode(f"{refusal.at.isoformat()}|{refusal.key}".encode()).decode().rstrip("=")


def _decode_refusal_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, key = raw.split("|", 1)
        return datetime.fromisoformat(at), key
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("not a cursor of this list; start again without it", field="cursor") from exc


async def refusal_page(
    conn: AsyncConnection, *, org_id: uuid.UUID, cap_id: uuid.UUID, limit: int = 50, cursor: str | None = None
) -> tuple[list[Refusal], str | None]:
    """One page of a cap's refusals over 30 days, newest first, and the cursor of the next (None: the last)."""
    before_at, before_key = _decode_refusal_cursor(cursor) if cursor else (None, None)
    rows = [
        _refusal(r)
        for r in await dict_rows(
            conn,
            "select * from ops.cap_refusals(%s, %s, %s, %s, %s)",
            (org_id, limit + 1, cap_id, before_at, before_key),
        )
    ]
    page = rows[:limit]
    return page, refusal_cursor(page[-1]) if len(rows) > limit else None


async def pending_submit_refusal(conn: AsyncConnection) -> dict[str, Any] | None:
    """The refusal ops.submit_run recorded in this transaction (to record again after it rolls back)."""
    refusal = await scalar(conn, "select ops.pending_submit_refusal()")
    return dict(refusal) if refusal else None


async def record_submit_refusal(conn: AsyncConnection, *, row: dict[str, Any]) -> bool:
    """Record a refused submit whose transaction rolled back; checked in SQL (the cap is full, the caller may
    submit there) and idempotent. True when recorded."""
    return bool(await scalar(conn, "select ops.record_submit_refusal(%s)", (Jsonb(row),)))


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


# Per-task ceilings a spec may set itself, and the cap kind each competes with for "tightest".
SPEC_CEILINGS = {
    "timeout_s": "max_runtime_s",
    "max_memory_mb": "max_memory_mb",
    "max_scan_bytes": "scanned_bytes_per_query",
}


@dataclass(frozen=True)
class Limit:
    """One limit on a task: a cap (``cap`` set) or a ceiling the spec sets itself, and whether it is the
    tightest of its kind (the one that stops the task first)."""

    kind: str
    limit: int
    layer: str
    source: str  # the cap's name, or "spec timeout_s"
    target: str  # what the cap covers ("pool etl"), or "this task"
    tightest: bool
    cap: CapView | None = None


@dataclass(frozen=True)
class TaskLimits:
    """The limits on one task of a spec: where routing sends it and every cap and ceiling that applies."""

    key: str
    engine: str
    pool: str
    rule: str  # the routing rule that picked the pool ("" when none matched)
    limits: tuple[Limit, ...]

    @property
    def tightest(self) -> list[Limit]:
        """The tightest limit of each kind, in kind order."""
        return [limit for limit in self.limits if limit.tightest]


def spec_tasks(spec: Any) -> list[dict[str, Any]]:
    """The tasks of a run spec (``{"tasks": [...]}``), a list of tasks or one task spec (``{"engine": ...}``);
    only what limits depend on is read, so a template's spec with parameters left in still answers."""
    if isinstance(spec, dict) and "tasks" in spec:
        tasks, prefix = spec["tasks"], "spec.tasks"
    elif isinstance(spec, list):
        tasks, prefix = spec, "spec"
    elif isinstance(spec, dict):
        tasks, prefix = [spec], "spec"
    else:
        raise Invalid('spec: a run spec ({"tasks": [...]}) or one task spec ({"engine": ...})', field="spec")
    if not isinstance(tasks, list) or not tasks:
        raise Invalid(f"{prefix}: at least one task", field=prefix)
    out = []
    for index, task in enumerate(tasks):
        where = f"{prefix}[{index}]" if prefix != "spec" or isinstance(spec, list) else "spec"
        if not isinstance(task, dict) or not isinstance(task.get("engine"), str) or not task["engine"]:
            raise Invalid(f"{where}.engine: every task names its engine (shell, python, dbt, spark, ...)",
                          field=f"{where}.engine")  # fmt: skip
        for name in ("labels", "required_labels"):
            value = task.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise Invalid(f"{where}.{name}: a list of strings", field=f"{where}.{name}")
        for name in (*SPEC_CEILINGS, "pool"):
            value = task.get(name)
            wanted = str if name == "pool" else int
            if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
                raise Invalid(f"{where}.{name}: {'a pool name' if name == 'pool' else 'a whole number'}",
                              field=f"{where}.{name}")  # fmt: skip
        out.append({**task, "key": str(task.get("key") or f"task-{index + 1}")})
    return out


def task_limits(caps: Sequence[CapView], scope: TaskScope, ceilings: dict[str, int]) -> list[Limit]:
    """Every cap that applies to the task and every ceiling its spec sets (by cap kind), the lowest of each
    kind marked tightest (a spec's ceiling wins a tie: it is the task's own)."""
    limits = [
        Limit(c.kind, c.limit, c.layer, c.name, c.target, False, c) for c, _ in effective(caps, scope)
    ] + [
        Limit(kind, value, LAYER[kind], f"spec {field}", "this task", False)
        for field, kind in SPEC_CEILINGS.items()
        if (value := ceilings.get(field)) is not None
    ]  # fmt: skip
    ordered = sorted(limits, key=lambda x: (KINDS.index(x.kind), x.limit, x.cap is not None, x.source))
    out, seen = [], set()
    for limit in ordered:
        first = limit.kind not in seen
        seen.add(limit.kind)
        out.append(Limit(limit.kind, limit.limit, limit.layer, limit.source, limit.target, first, limit.cap))
    return out


async def effective_for_spec(
    conn: AsyncConnection, *, org_id: uuid.UUID, project: str, environment: str, spec: Any,
    tags: Sequence[str] = (),
) -> list[TaskLimits]:  # fmt: skip
    """Which limits apply to each task of ``spec`` run in ``project``/``environment``, and which is tightest
    (routing decides the pool, as at enqueue; the caps are the org's enabled caps with live usage)."""
    from control_room.services import routing  # routing's simulator imports this module

    tasks = spec_tasks(spec)
    matrix = await routing.load_matrix(conn, org_id=org_id)
    if project not in matrix.projects:
        known = ", ".join(sorted(matrix.projects)) or "none"
        raise Invalid(f'project "{project}" is not a project of org {matrix.org} (projects: {known})', field="project")
    if environment not in routing.ENVIRONMENTS:
        raise Invalid("environment: dev, staging or prod", field="environment")
    views = await list_caps(conn, org_id=org_id, with_refusals=False)
    out = []
    for task in tasks:
        probe = routing.TaskProbe(
            project, environment, task["engine"], tuple(task.get("labels", ())), tuple(tags),
            task.get("pool") or "", tuple(task.get("required_labels", ())),
        )  # fmt: skip
        route = routing.explain(matrix.rules, probe)
        scope = TaskScope(project, environment, route.pool, task["engine"])
        ceilings = {name: int(task[name]) for name in SPEC_CEILINGS if task.get(name) is not None}
        out.append(TaskLimits(task["key"], task["engine"], route.pool, route.rule,
                              tuple(task_limits(views, scope, ceilings))))  # fmt: skip
    return out


async def template_specs(conn: AsyncConnection, *, org_id: uuid.UUID) -> list[tuple[str, str, dict[str, Any]]]:
    """The org's job templates the caller can see, as (project slug, template name, latest version's spec)."""
    rows = await dict_rows(
        conn,
        "select p.slug, t.name, v.tasks from ops.job_templates t join ops.projects p on p.id = t.project_id "
        "join lateral (select x.tasks from ops.job_template_versions x where x.template_id = t.id "
        "              order by x.version desc limit 1) v on true "
        "where t.org_id = %s and t.archived_at is null order by p.slug, t.name",
        (org_id,),
    )
    return [(r["slug"], r["name"], {"name": r["name"], "tasks": r["tasks"]}) for r in rows]


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
        project_id = await scalar(
            conn, "select id from ops.projects where org_id = %s and slug = %s", (org_id, draft.project)
        )
        if project_id is None:
            raise Invalid(f'project "{draft.project}" is not a project of this org that you can see', field="project")
    if draft.scope == "environment":
        environment_id = await scalar(
            conn, "select id from ops.environments where project_id = %s and name = %s", (project_id, draft.environment)
        )
        if environment_id is None:
            raise Invalid(f'project "{draft.project}" has no environment "{draft.environment}"', field="environment")
    return await returned_id(
        conn,
        "select ops.save_cap(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (org_id, draft.id or None, draft.name, draft.scope, project_id, environment_id, draft.pool or None,
         draft.engine or None, draft.kind, draft.limit, draft.enabled, by),
    )  # fmt: skip


async def delete_cap(conn: AsyncConnection, *, cap_id: uuid.UUID, by: str | None) -> None:
    """Delete a cap and its usage history (admins; audited in SQL)."""
    await conn.execute("select ops.delete_cap(%s, %s)", (cap_id, by))


async def cap_id_by_name(conn: AsyncConnection, *, org_id: uuid.UUID, name: str) -> uuid.UUID:
    """The id of the org's cap of this name; NotFound naming the caps there are."""
    found = await scalar(conn, "select id from ops.caps where org_id = %s and name = %s", (org_id, name))
    if found is None:
        cur = await conn.execute("select name from ops.caps where org_id = %s order by name", (org_id,))
        names = ", ".join(r[0] for r in await cur.fetchall()) or "none"
        raise NotFound(f'no cap named "{name}" (caps: {names})', field="name")
    return uuid.UUID(str(found))
