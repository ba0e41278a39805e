"""The GitOps bundle's SQL: reads an org's live configuration rows, writes plan changes, audits each one.

``control_room/bundle/`` translates between bundle items (slugs) and these rows (uuids); every
statement it needs is here. Writes run inside the deploy's transaction, serialized per org.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

if TYPE_CHECKING:  # the SQLModel mirror pulls in SQLAlchemy (a second of a replica's start): loaded where used
    from control_room.db import tables

# Serializes deploys of one org (pg_advisory_xact_lock(class, hashtext(org slug))).
DEPLOY_LOCK_CLASS = 72_451_190
# The tables a bundle deploys to (``ops.<name>``); nothing else is written by name.
BUNDLE_TABLES = (
    "routing_rules", "caps", "job_templates", "schedules", "alert_rules", "promotion_gates", "alert_channels",
)  # fmt: skip

Row = dict[str, Any]


# Org directory -----------------------------------------------------------------------------------


def org_id(conn: psycopg.Connection[Any], slug: str) -> uuid.UUID | None:
    """The id of the org with this slug, None when there is none."""
    row = conn.execute("select id from ops.orgs where slug = %s", (slug,)).fetchone()
    return None if row is None else uuid.UUID(str(row[0]))


def org_slugs(conn: psycopg.Connection[Any]) -> list[str]:
    """Every org's slug, sorted."""
    return [str(r[0]) for r in conn.execute("select slug from ops.orgs order by slug").fetchall()]


def project_ids(conn: psycopg.Connection[Any], org: uuid.UUID) -> dict[str, uuid.UUID]:
    """The org's projects: slug -> id."""
    rows = conn.execute("select slug, id from ops.projects where org_id = %s", (org,)).fetchall()
    return {slug: pid for slug, pid in rows}


def environment_ids(conn: psycopg.Connection[Any], org: uuid.UUID) -> dict[tuple[str, str], uuid.UUID]:
    """The org's environments: (project slug, environment name) -> id."""
    rows = conn.execute(
        "select p.slug, e.name, e.id from ops.environments e join ops.projects p on p.id = e.project_id "
        "where p.org_id = %s",
        (org,),
    ).fetchall()
    return {(slug, name): eid for slug, name, eid in rows}


def template_ids(conn: psycopg.Connection[Any], org: uuid.UUID) -> dict[str, uuid.UUID]:
    """Every template of the org (archived included) by ``project/name``."""
    rows = conn.execute(
        "select p.slug || '/' || t.name, t.id from ops.job_templates t join ops.projects p on p.id = t.project_id "
        "where t.org_id = %s",
        (org,),
    ).fetchall()
    return {key: tid for key, tid in rows}


# Live rows, one read per bundle section ----------------------------------------------------------

_SECTION_SQL: dict[str, str] = {
    "routing_rules": "select * from ops.routing_rules where org_id = %s order by position, name",
    "caps": "select * from ops.caps where org_id = %s order by name",
    "job_templates": """
        select t.id, p.slug as project, t.name, t.description, t.owner, t.tags, t.archived_at,
               v.version, v.params_schema, v.tasks, v.max_attempts, v.retry_backoff_s, v.timeout_s,
               v.content_sha256
        from ops.job_templates t
        join ops.projects p on p.id = t.project_id
        left join lateral (
            select * from ops.job_template_versions v where v.template_id = t.id
            order by v.version desc limit 1
        ) v on true
        where t.org_id = %s
        order by p.slug, t.name
        """,
    "schedules": """
        select s.*, p.slug as project, t.name as template, e.name as environment
        from ops.schedules s
        join ops.projects p on p.id = s.project_id
        join ops.job_templates t on t.id = s.template_id
        join ops.environments e on e.id = s.environment_id
        where s.org_id = %s order by p.slug, s.name
        """,
    "alert_rules": "select * from ops.alert_rules where org_id = %s order by name",
    "alert_channels": "select * from ops.alert_channels where org_id = %s order by name",
    "promotion_gates": """
        select g.*, p.slug as project from ops.promotion_gates g join ops.projects p on p.id = g.project_id
        where g.org_id = %s order by p.slug, g.name
        """,
    # Dashboards (issue 24): the latest version's spec; written through ops.save_dashboard / ops.archive_dashboard.
    "dashboards": """
        select d.id, p.slug as project, d.slug as name, d.archived_at, d.latest_version as version, v.spec,
               v.content_sha256
        from ops.dashboards d
        join ops.projects p on p.id = d.project_id
        join ops.dashboard_versions v on v.dashboard_id = d.id and v.version = d.latest_version
        where d.org_id = %s order by p.slug, d.slug
        """,
    # Access policies (issue 22): written through their audited SQL functions (see below), never by name.
    "service_principals": "select id, name, description from ops.service_principals where org_id = %s order by name",
    "groups": """
        select g.id, g.name, g.description, coalesce((select jsonb_agg(jsonb_build_object('kind', m.member_kind,
               'name', m.member) order by m.member_kind, m.member) from ops.principal_group_members m
               where m.group_id = g.id), '[]') as members
        from ops.principal_groups g where g.org_id = %s order by g.name
        """,
    "access_policies": """
        select x.*, (select d.name from ops.datasets d where d.id::text = x.target and x.target_kind = 'dataset')
               as dataset_name
        from ops.access_policies x where x.org_id = %s order by x.name
        """,
    # Serving endpoints (issue 23) with the traffic split of their current revision; written through
    # ops.deploy_serving_endpoint and ops.delete_serving_endpoint (see below).
    "serving_endpoints": """
        select e.id, p.slug as project, x.name as environment, e.name, e.status, e.replicas, e.pool,
               e.max_memory_mb, r.routes
        from ops.serving_endpoints e
        join ops.projects p on p.id = e.project_id
        join ops.environments x on x.id = e.environment_id
        join ops.serving_endpoint_revisions r on r.endpoint_id = e.id and r.revision = e.revision
        where e.org_id = %s order by p.slug, e.name
        """,
    # Project settings (issue 25): every project of the org has them; written by set_project_settings below.
    "settings": """
        select id, slug as project, event_retention_days, require_available_engine
        from ops.projects where org_id = %s order by slug
        """,
}


# Sections that are one table each come back as that table's typed rows; the others join in the
# slugs and names the bundle uses (and, for templates, the latest version) and come back as dicts.
def _table_rows(section: str) -> type[tables.OpsTable] | None:
    from control_room.db import tables

    models: dict[str, type[tables.OpsTable]] = {
        "routing_rules": tables.RoutingRule,
        "caps": tables.Cap,
        "alert_rules": tables.AlertRule,
        "alert_channels": tables.AlertChannel,
    }
    return models.get(section)


def live_rows(conn: psycopg.Connection[Any], section: str, org: uuid.UUID) -> list[Any]:
    """The org's rows behind one bundle section, in the bundle's order (templates with their latest version):
    ``db.tables`` models for routing rules, caps and alert rules, dicts for the joined sections."""
    from control_room.db.rows import model_rows

    model = _table_rows(section)
    with conn.cursor(row_factory=model_rows(model) if model else dict_row) as cur:
        return cur.execute(_SECTION_SQL[section], (org,)).fetchall()


# Writes ------------------------------------------------------------------------------------------


def _table(table: str) -> sql.Composable:
    if table not in BUNDLE_TABLES:
        raise ValueError(f"{table!r} is not a table the bundle writes; use one of {', '.join(BUNDLE_TABLES)}")
    return sql.Identifier("ops", table)


def lock_org(conn: psycopg.Connection[Any], org_slug: str) -> None:
    """Serialize deploys of one org until the end of the transaction."""
    conn.execute("select pg_advisory_xact_lock(%s, hashtext(%s))", (DEPLOY_LOCK_CLASS, org_slug))


def audit(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    entity: str,
    entity_id: uuid.UUID,
    project_id: uuid.UUID | None,
    action: str,
    detail: dict[str, Any],
) -> None:
    """One audit-log row for one configuration change."""
    conn.execute(
        "insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail) "
        "values (%s, %s, %s, %s, %s, %s)",
        (actor, entity, entity_id, project_id, action, Jsonb(detail)),
    )


def insert_row(conn: psycopg.Connection[Any], table: str, values: Mapping[str, Any]) -> uuid.UUID:
    """Insert one row into ``ops.<table>``; returns its id."""
    columns = list(values)
    statement = sql.SQL("insert into {} ({}) values ({}) returning id").format(
        _table(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )
    row = conn.execute(statement, [values[c] for c in columns]).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def update_row(conn: psycopg.Connection[Any], table: str, row_id: uuid.UUID, values: Mapping[str, Any]) -> None:
    """Update one row of ``ops.<table>`` by id, stamping ``updated_at``."""
    columns = list(values)
    statement = sql.SQL("update {} set {}, updated_at = now() where id = %s").format(
        _table(table),
        sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in columns),
    )
    conn.execute(statement, [*(values[c] for c in columns), row_id])


def delete_row(conn: psycopg.Connection[Any], table: str, row_id: uuid.UUID) -> None:
    """Delete one row of ``ops.<table>`` by id."""
    conn.execute(sql.SQL("delete from {} where id = %s").format(_table(table)), (row_id,))


def park_routing_positions(conn: psycopg.Connection[Any], rule_ids: list[uuid.UUID]) -> None:
    """Move rules out of the way (negative positions) so a reordering never trips unique (org, position)."""
    for offset, rule_id in enumerate(rule_ids):
        conn.execute("update ops.routing_rules set position = %s where id = %s", (-2_000_000_000 + offset, rule_id))


def version_args(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """A version's columns as SQL arguments, in the order the version statements take them: params_schema,
    tasks, max_attempts, retry_backoff_s, timeout_s, content_sha256."""
    return (
        Jsonb(values["params_schema"]),
        Jsonb(values["tasks"]),
        values["max_attempts"],
        values["retry_backoff_s"],
        values["timeout_s"],
        values["content_sha256"],
    )


def insert_template_version(
    conn: psycopg.Connection[Any], template_id: uuid.UUID, definition: Mapping[str, Any], *, actor: str
) -> int:
    """Add the next version of a template; ``definition`` holds the version's columns. Returns its number."""
    row = conn.execute(
        "select coalesce(max(version), 0) + 1 from ops.job_template_versions where template_id = %s", (template_id,)
    ).fetchone()
    assert row is not None
    version = int(row[0])
    conn.execute(
        "insert into ops.job_template_versions (template_id, version, params_schema, tasks, max_attempts, "
        "retry_backoff_s, timeout_s, content_sha256, created_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (template_id, version, *version_args(definition), actor),
    )
    return version


def set_template_archived(conn: psycopg.Connection[Any], template_id: uuid.UUID, *, archived: bool) -> None:
    """Archive a template removed from the bundle (its versions are history and stay), or bring it back."""
    conn.execute(
        "update ops.job_templates set archived_at = case when %s then now() end, updated_at = now() where id = %s",
        (archived, template_id),
    )


# Deploying into a gated environment ---------------------------------------------------------------------


def target_states(conn: psycopg.Connection[Any], org_id: uuid.UUID, environment: str) -> dict[str, dict[str, Any]]:
    """Per active template of the org (``project/name``): its latest version, the gate leading into
    ``environment`` (None when ungated), the version deployed there and the pending request into it."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            select p.slug || '/' || t.name as key, t.id as template_id,
                   (select max(v.version) from ops.job_template_versions v where v.template_id = t.id) as latest,
                   (ops.gate_into(t.id, %(env)s)).name as gate,
                   (ops.current_deployment(t.id, e.id)).version as deployed,
                   pr.id as request_id, pr.version as request_version
            from ops.job_templates t join ops.projects p on p.id = t.project_id
            join ops.environments e on e.project_id = t.project_id and e.name = %(env)s
            left join ops.promotion_requests pr
                   on pr.template_id = t.id and pr.to_environment = %(env)s and pr.status = 'pending'
            where t.org_id = %(org)s and t.archived_at is null
            """,
            {"org": org_id, "env": environment},
        )
        return {row["key"]: row for row in cur.fetchall()}


def project_gates_into(conn: psycopg.Connection[Any], org_id: uuid.UUID, environment: str) -> dict[str, str]:
    """The enabled project-wide gate into ``environment`` per project slug (what guards a new template)."""
    rows = conn.execute(
        "select distinct on (p.slug) p.slug, g.name "
        "from ops.promotion_gates g join ops.projects p on p.id = g.project_id "
        "where g.org_id = %s and g.enabled and g.template_id is null and g.to_environment = %s and %s <> 'dev' "
        "order by p.slug, g.name",
        (org_id, environment, environment),
    ).fetchall()
    return {slug: name for slug, name in rows}


def user_id_by_email(conn: psycopg.Connection[Any], email: str) -> uuid.UUID | None:
    """The id of the user with this e-mail (any case), or None."""
    found = conn.execute("select id from ops.users where lower(email) = lower(%s)", (email,)).fetchone()
    return found[0] if found else None


def request_promotion(
    conn: psycopg.Connection[Any],
    *,
    template_id: uuid.UUID,
    version: int,
    environment: str,
    comment: str,
    by: str,
    user_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, str]:
    """Open a promotion request for the deploy (ops.request_promotion: the gate's checks start at once);
    returns its id and status (``promoted`` when the gate asked for nothing more). ``user_id`` is the person
    who deploys: the request's requester, who may then not approve it (four eyes)."""
    opened = conn.execute(
        "select ops.request_promotion(%s, %s, %s, %s, %s, %s)",
        (template_id, version, environment, comment, user_id, by),
    ).fetchone()
    assert opened is not None
    row = conn.execute("select status from ops.promotion_requests where id = %s", (opened[0],)).fetchone()
    assert row is not None
    return opened[0], row[0]


# Access policies (issue 22): the bundle writes groups, service principals and policies through the same
# validated, audited SECURITY DEFINER functions as the page, the API and the CLI.


def save_service_principal(
    conn: psycopg.Connection[Any], org: uuid.UUID, values: Mapping[str, Any], *, actor: str
) -> uuid.UUID:
    row = conn.execute(
        "select ops.save_service_principal(%s, %s, %s, %s)", (org, values["name"], values["description"], actor)
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def save_group(conn: psycopg.Connection[Any], org: uuid.UUID, values: Mapping[str, Any], *, actor: str) -> uuid.UUID:
    row = conn.execute(
        "select ops.save_principal_group(%s, %s, %s, %s, %s)",
        (org, values["name"], values["description"], Jsonb(values["members"]), actor),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def dataset_id_by_name(conn: psycopg.Connection[Any], org: uuid.UUID, name: str) -> uuid.UUID | None:
    """The id of the org's dataset with this full name (case-insensitive), None when there is none."""
    row = conn.execute(
        "select d.id from ops.datasets d join ops.projects p on p.id = d.project_id "
        "where p.org_id = %s and lower(d.name) = lower(%s) order by d.id limit 1",
        (org, name),
    ).fetchone()
    return None if row is None else uuid.UUID(str(row[0]))


def save_access_policy(
    conn: psycopg.Connection[Any], org: uuid.UUID, policy_id: uuid.UUID | None, body: Mapping[str, Any], *, actor: str
) -> uuid.UUID:
    row = conn.execute(
        "select ops.save_access_policy(%s, %s, %s, %s)", (org, policy_id, Jsonb(dict(body)), actor)
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def delete_access_item(conn: psycopg.Connection[Any], section: str, org: uuid.UUID, name: str, *, actor: str) -> None:
    """Delete a policy, group or service principal of the org by name (audited by its SQL function)."""
    function = {
        "access_policies": "ops.delete_access_policy",
        "groups": "ops.delete_principal_group",
        "service_principals": "ops.delete_service_principal",
    }[section]
    conn.execute(sql.SQL("select {}(%s, %s, %s)").format(sql.SQL(function)), (org, name, actor))


# Serving endpoints (issue 23): created, updated and deleted through the audited SQL functions that check the
# project role and the org's serving replica cap, as the page's functions do.


def deploy_serving_endpoint(
    conn: psycopg.Connection[Any], project_id: uuid.UUID, values: Mapping[str, Any], *, actor: str
) -> uuid.UUID:
    """Create the endpoint, or make it equal to ``values`` (a changed split is a new revision); returns its id."""
    row = conn.execute(
        "select ops.deploy_serving_endpoint(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            project_id, values["environment"], values["name"], Jsonb(values["routes"]), values["replicas"],
            values["pool"], values["max_memory_mb"], values["status"], actor,
        ),
    ).fetchone()  # fmt: skip
    assert row is not None
    return uuid.UUID(str(row[0]))


def delete_serving_endpoint(conn: psycopg.Connection[Any], endpoint_id: uuid.UUID, *, actor: str) -> None:
    """Delete an endpoint: its replicas are cancelled; its revisions, tokens and stats go with it."""
    conn.execute("select ops.delete_serving_endpoint(%s, %s)", (endpoint_id, actor))


# Project settings (issue 25) --------------------------------------------------------------------------


def set_project_settings(
    conn: psycopg.Connection[Any], org: uuid.UUID, project_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    """Give one project of the org these settings (the deploy audits the change with its fields). The columns'
    checks hold the same bounds as the bundle's model and ops.set_event_retention (0 to 3650 days)."""
    updated = conn.execute(
        "update ops.projects set event_retention_days = %s, require_available_engine = %s "
        "where id = %s and org_id = %s returning id",
        (values["event_retention_days"], values["require_available_engine"], project_id, org),
    ).fetchone()
    if updated is None:
        raise LookupError(f"project {project_id} is not a project of org {org}")


# Dashboards (issue 24) ----------------------------------------------------------------------------


def save_dashboard(
    conn: psycopg.Connection[Any],
    *,
    project_id: uuid.UUID,
    slug: str,
    title: str,
    spec: dict[str, Any],
    source_yaml: str,
    content_sha256: str,
    actor: str,
) -> int:
    """Create the dashboard, add a version when its content changed, restore it when archived (audited in SQL);
    returns its latest version."""
    row = conn.execute(
        "select version from ops.save_dashboard(%s, %s, %s, null, %s, %s, %s, 'bundle deploy', null, %s)",
        (project_id, slug, title, Jsonb(spec), source_yaml, content_sha256, actor),
    ).fetchone()
    assert row is not None
    return int(row[0])


def archive_dashboard(conn: psycopg.Connection[Any], *, project_id: uuid.UUID, slug: str, actor: str) -> None:
    """Archive a dashboard the bundle no longer names (its versions stay; audited in SQL)."""
    conn.execute("select ops.archive_dashboard(%s, %s, %s)", (project_id, slug, actor))
