"""Job templates for clients: list and inspect templates and versions, validate params, run a template."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from control_room.config import get_settings
from control_room.db.rows import dict_rows, model_list, one_row
from control_room.db.tables import JobTemplateVersion
from control_room.services import caps
from control_room.services.errors import CapExceeded, Invalid, NotFound, the_only_id, visible_by_id
from control_room.services.pagination import ListQuery, Page, by_name, decode_key_cursor, escape_like, name_cursor_after
from control_room.services.runs import ENGINES_NOTE, get_run, resolve_project

if TYPE_CHECKING:  # imported where used: jsonschema's format checkers take seconds to import, and CLI
    # commands that only list (`lakehouse jobs list`, `alerts rules`) should not pay for them
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

# Params the scheduler and backfills set on each run (the fire's logical time and data interval).
# They are always accepted, on top of what a template's params schema allows.
INTERVAL_PARAMS = ("logical_date", "data_interval_start", "data_interval_end")

TEMPLATE_COLUMNS = """
    t.id, t.name, t.project_id, p.slug as project, t.description, t.owner, t.tags,
    t.archived_at, t.created_at, t.updated_at,
    lv.version as latest_version, lv.id as latest_version_id,
    (select count(*) from ops.schedules s where s.template_id = t.id)::int as schedules
"""
TEMPLATE_FROM = """
    ops.job_templates t join ops.projects p on p.id = t.project_id
    left join lateral (select v.id, v.version from ops.job_template_versions v where v.template_id = t.id
                       order by v.version desc limit 1) lv on true
"""


def _pointer(parts: Any) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def preload_validator() -> None:
    """Import jsonschema ahead of the first fire. With its format extras installed the import compiles
    URI grammars for seconds (3-13 s measured on 2 cores), which would otherwise land in the
    scheduler's first batch of due fires."""
    import jsonschema  # noqa: F401


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Draft202012Validator:
    """A checked validator per distinct schema (checking a schema costs milliseconds; the scheduler
    validates thousands of fires of a few templates)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:  # the bundle validates schemas; this guards versions written otherwise
        message = f"the template's params schema is not valid JSON Schema: {exc.message}"
        raise Invalid(message, field="params_schema") from exc
    return Draft202012Validator(schema)


def validate_params(schema: dict[str, Any], params: dict[str, Any], *, field: str = "params") -> dict[str, Any]:
    """Params checked against a version's JSON Schema, with top-level defaults filled in.

    Raises Invalid naming the offending value with a JSON pointer (``/params/source``). The
    interval params (``logical_date``, ...) are allowed even when the schema closes its properties.
    """
    if not isinstance(params, dict):
        raise Invalid("must be a JSON object", field=f"/{field}")
    validator = _validator(json.dumps(schema, sort_keys=True))
    properties = schema.get("properties")
    declared: dict[str, Any] = properties if isinstance(properties, dict) else {}
    checked = {k: v for k, v in params.items() if k not in INTERVAL_PARAMS or k in declared}
    errors = sorted(validator.iter_errors(checked), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        error: ValidationError = errors[0]
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            if missing:
                path.append(missing[0])
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
            extra = sorted(k for k in error.instance if k not in allowed)
            if extra:
                path.append(extra[0])
        raise Invalid(f"{error.message} (see the template's params schema)", field="/" + field + _pointer(path))
    filled = dict(params)
    for name, prop in declared.items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled


async def resolve_template(conn: AsyncConnection, template: str, *, project: str | None = None) -> uuid.UUID:
    """A template id from an id, a name, or ``project/name`` (names must be unambiguous among visible ones)."""
    try:
        return uuid.UUID(template)
    except ValueError:
        pass
    if "/" in template and project is None:
        project, _, template = template.partition("/")
    if project is not None:
        project_id = await resolve_project(conn, project)
        cur = await conn.execute(
            "select id from ops.job_templates where project_id = %s and name = %s", (project_id, template)
        )
    else:
        cur = await conn.execute("select id from ops.job_templates where name = %s limit 2", (template,))
    return the_only_id(
        await cur.fetchall(), f'job template "{template}"', field="template", hint="--project or PROJECT/NAME"
    )


# Run figures of each template over 30 days (runs, success rate, p50/p95 duration), its latest run
# and its next scheduled fire: the columns of the Jobs lists.
STATS_COLUMNS = """
    st.runs, st.succeeded, st.p50_s, st.p95_s, lr.status as last_status, lr.id as last_run_id,
    lr.created_at as last_run_at,
    (select min(s.next_fire_at) from ops.schedules s
     where s.template_id = t.id and s.enabled and s.paused_at is null) as next_fire_at
"""
STATS_JOINS = """
    left join lateral (
        select count(*)::int as runs, count(*) filter (where r.status = 'succeeded')::int as succeeded,
               percentile_cont(0.5) within group (order by extract(epoch from r.finished_at - r.started_at))
                   filter (where r.finished_at is not null and r.started_at is not null) as p50_s,
               percentile_cont(0.95) within group (order by extract(epoch from r.finished_at - r.started_at))
                   filter (where r.finished_at is not null and r.started_at is not null) as p95_s
        from ops.runs r where r.template_id = t.id and r.created_at > now() - interval '30 days'
    ) st on true
    left join lateral (
        select r.id, r.status, r.created_at from ops.runs r where r.template_id = t.id
        order by r.created_at desc, r.id desc limit 1
    ) lr on true
"""
BY_NAME = by_name("t")


def _with_success_rate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        finished = row["runs"] or 0
        row["success_rate"] = (row["succeeded"] / finished) if finished else None
    return rows


async def list_templates(
    conn: AsyncConnection, *, project: str | None = None, include_archived: bool = False, text: str | None = None
) -> list[dict[str, Any]]:
    """Templates visible to the caller with their latest version and run figures (30 days)."""
    where = ["true"]
    args: list[Any] = []
    if project:
        where.append("t.project_id = %s")
        args.append(await resolve_project(conn, project))
    if not include_archived:
        where.append("t.archived_at is null")
    if text:
        where.append("(t.name ilike %s or t.description ilike %s)")
        args.extend([f"%{text}%", f"%{text}%"])
    return _with_success_rate(
        await dict_rows(
            conn,
            f"""
            select {TEMPLATE_COLUMNS}, {STATS_COLUMNS}
            from {TEMPLATE_FROM} {STATS_JOINS}
            where {" and ".join(where)}
            order by p.slug, t.name
            """,
            args,
        )
    )


@dataclass(frozen=True)
class TemplatesQuery:
    """What the Jobs page lists: one project's templates, searched and filtered."""

    project_id: uuid.UUID
    text: str | None = None  # in name, description, owner or a tag
    tag: str | None = None
    owner: str | None = None
    last_status: str | None = None
    archived: bool = False  # archived templates instead of active ones


async def templates_page(
    conn: AsyncConnection, *, query: TemplatesQuery, cursor: str | None = None, limit: int = 50
) -> Page:
    """One page of a project's templates by name, with their run figures; and the next page's cursor."""
    if not 1 <= limit <= 500:
        raise Invalid("must be between 1 and 500", field="limit")
    conditions = ListQuery()
    conditions.add("t.project_id = %s", query.project_id)
    conditions.add("t.archived_at is not null" if query.archived else "t.archived_at is null")
    text = (query.text or "").strip()
    if text:
        pattern = f"%{escape_like(text)}%"
        conditions.add(
            "(t.name ilike %s or t.description ilike %s or t.owner ilike %s or array_to_string(t.tags, ' ') ilike %s)",
            pattern, pattern, pattern, pattern,
        )  # fmt: skip
    conditions.contains("t.tags", query.tag)
    conditions.equal("t.owner", query.owner)
    if query.last_status == "never":
        conditions.add("lr.status is null")
    else:
        conditions.equal("lr.status", query.last_status)
    if cursor:
        conditions.after(BY_NAME, *decode_key_cursor(cursor))
    rows, next_cursor = await conditions.page(
        conn,
        columns=f"{TEMPLATE_COLUMNS}, {STATS_COLUMNS}",
        source=f"{TEMPLATE_FROM} {STATS_JOINS}",
        keyset=BY_NAME,
        limit=limit,
        cursor_of=name_cursor_after,
    )
    return _with_success_rate(rows), next_cursor


async def template_facets(conn: AsyncConnection, *, project_id: uuid.UUID) -> dict[str, list[str]]:
    """The tags and owners of a project's templates (the Jobs page's filter choices)."""
    row = await one_row(
        conn,
        "select coalesce(array(select distinct x from ops.job_templates t, unnest(t.tags) x "
        "where t.project_id = %s order by 1), '{}'), "
        "coalesce(array(select distinct owner from ops.job_templates where project_id = %s and owner is not null "
        "order by 1), '{}')",
        (project_id, project_id),
    )
    return {"tags": list(row[0]), "owners": list(row[1])}


async def get_template(conn: AsyncConnection, *, template_id: uuid.UUID) -> dict[str, Any]:
    """A template with every version (newest first, as ``JobTemplateVersion`` rows) and its schedules."""
    template = await visible_by_id(
        conn, TEMPLATE_COLUMNS, TEMPLATE_FROM, "t.id", template_id, what="job template", field="template_id"
    )
    template["versions"] = await model_list(
        conn,
        JobTemplateVersion,
        "select * from ops.job_template_versions where template_id = %s order by version desc",
        (template_id,),
    )
    template["schedule_list"] = await dict_rows(
        conn,
        """
            select s.id, s.name, e.name as environment, s.cron, s.timezone, s.params, s.enabled,
                   s.paused_at is not null as paused, s.catchup, s.catchup_limit, s.overlap, s.jitter_s,
                   s.next_fire_at, s.description
            from ops.schedules s join ops.environments e on e.id = s.environment_id
            where s.template_id = %s order by s.name
            """,
        (template_id,),
    )
    return template


async def version_schema(conn: AsyncConnection, *, template_id: uuid.UUID, version: int | None) -> dict[str, Any]:
    """The params schema of a version (the latest when None)."""
    if version is None:
        cur = await conn.execute(
            "select params_schema from ops.job_template_versions where template_id = %s order by version desc limit 1",
            (template_id,),
        )
    else:
        cur = await conn.execute(
            "select params_schema from ops.job_template_versions where template_id = %s and version = %s",
            (template_id, version),
        )
    row = await cur.fetchone()
    if row is None:
        what = "any version" if version is None else f"version {version}"
        raise NotFound(f"job template {template_id} has no {what}", field="version")
    schema: dict[str, Any] = row[0]
    return schema


async def run_template(
    conn: AsyncConnection,
    *,
    template_id: uuid.UUID,
    environment: str,
    params: dict[str, Any],
    version: int | None = None,
    idempotency_key: str | None = None,
    priority: int = 0,
    tags: list[str] | None = None,
    trigger: str = "api",
    requested_by: uuid.UUID | None = None,
    requested_by_name: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Submit a run of a template version (the latest when None) after validating its params.

    The role check (operators run, viewers may not) happens in ops.submit_template_run.
    """
    schema = await version_schema(conn, template_id=template_id, version=version)
    checked = validate_params(schema, params)
    run_id, created, refusal, used_version, _ = await one_row(
        conn,
        f"select s.run_id, s.created, s.refusal, s.version, {ENGINES_NOTE} from ops.submit_template_run("
        "%s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s) s",
        (
            get_settings().executor_offline_after_seconds,
            template_id,
            environment,
            json.dumps(checked),
            version,
            trigger,
            requested_by,
            requested_by_name,
            idempotency_key,
            priority,
            tags or [],
        ),
    )
    if refusal:
        raise CapExceeded(refusal, record=await caps.pending_submit_refusal(conn))
    run = await get_run(conn, run_id=run_id, with_tasks=False)
    run.update(template_id=template_id, template_version=used_version)
    return run, bool(created)
