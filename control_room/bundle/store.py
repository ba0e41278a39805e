"""The one place that knows the bundle's SQL: reads an org's live configuration, writes plan changes.

Rows are named by slugs in bundles and by uuids in the database; ``OrgDirectory`` translates. Every
write is followed by an ``ops.audit_log`` row (entity = table, action = create/update/delete).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from control_room.bundle.models import (
    AlertRule,
    Bundle,
    Cap,
    JobTemplate,
    PromotionGate,
    RoutingRule,
    Schedule,
    section_key,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

# Serializes deploys of one org (pg_advisory_xact_lock(class, hashtext(org slug))).
DEPLOY_LOCK_CLASS = 72_451_190


class UnknownOrg(LookupError):
    """The bundle's org does not exist on the control plane."""


class LiveConfigurationError(RuntimeError):
    """A live row cannot be expressed as a bundle item (it was written outside the bundle's rules)."""


@dataclass(frozen=True)
class OrgDirectory:
    """Slugs <-> ids of one org's projects and environments."""

    org_id: uuid.UUID
    slug: str
    projects: dict[str, uuid.UUID]
    environments: dict[tuple[str, str], uuid.UUID]

    def project_slug(self, project_id: uuid.UUID | None) -> str | None:
        """The slug of a project id (None for None)."""
        if project_id is None:
            return None
        for slug, pid in self.projects.items():
            if pid == project_id:
                return slug
        raise LiveConfigurationError(f"project {project_id} is not a project of org {self.slug}")

    def environment_of(self, environment_id: uuid.UUID) -> tuple[str, str]:
        """(project slug, environment name) of an environment id."""
        for key, eid in self.environments.items():
            if eid == environment_id:
                return key
        raise LiveConfigurationError(f"environment {environment_id} is not an environment of org {self.slug}")


def org_directory(conn: psycopg.Connection[Any], org_slug: str) -> OrgDirectory:
    """The org's projects and environments; ``UnknownOrg`` when it does not exist."""
    row = conn.execute("select id from ops.orgs where slug = %s", (org_slug,)).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("select slug from ops.orgs order by slug").fetchall()]
        raise UnknownOrg(f'org "{org_slug}" does not exist on the control plane (orgs: {", ".join(known) or "none"})')
    org_id = row[0]
    projects = {
        slug: pid
        for pid, slug in conn.execute("select id, slug from ops.projects where org_id = %s", (org_id,)).fetchall()
    }
    environments = {
        (slug, name): eid
        for eid, slug, name in conn.execute(
            "select e.id, p.slug, e.name from ops.environments e join ops.projects p on p.id = e.project_id "
            "where p.org_id = %s",
            (org_id,),
        ).fetchall()
    }
    return OrgDirectory(org_id=org_id, slug=org_slug, projects=projects, environments=environments)


@dataclass
class LiveState:
    """An org's live configuration as a bundle, with the ids and version numbers behind it."""

    bundle: Bundle
    ids: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    # Latest version per template key, archived templates included (they may come back).
    template_versions: dict[str, int] = field(default_factory=dict)
    archived_templates: dict[str, uuid.UUID] = field(default_factory=dict)
    archived_definitions: dict[str, str] = field(default_factory=dict)


def _model(model: type[ModelT], data: dict[str, Any], what: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LiveConfigurationError(
            f"{what} cannot be exported as a bundle item: {where}: {first['msg']}. Fix the row, then export again."
        ) from exc


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def read_live(conn: psycopg.Connection[Any], directory: OrgDirectory) -> LiveState:
    """The org's live routing matrix, caps, templates (latest versions), schedules, alerts and gates."""
    org = directory.org_id
    state = LiveState(bundle=Bundle(org=directory.slug))
    sections: dict[str, list[Any]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        rules = []
        for row in cur.execute(
            "select * from ops.routing_rules where org_id = %s order by position, name", (org,)
        ).fetchall():
            rule = _model(
                RoutingRule,
                {
                    "name": row["name"],
                    "position": row["position"],
                    "match": _drop_none(
                        {
                            "project": directory.project_slug(row["match_project_id"]),
                            "environment": row["match_environment"],
                            "engine": row["match_engine"],
                            "labels": list(row["match_labels"]),
                            "tags": list(row["match_tags"]),
                        }
                    ),
                    "pool": row["pool"],
                    "required_labels": list(row["required_labels"]),
                    "owner": row["owner"],
                    "escalation": row["escalation"],
                    "enabled": row["enabled"],
                },
                f'routing rule "{row["name"]}"',
            )
            rules.append(rule)
            state.ids[("routing_rules", rule.name)] = row["id"]
        sections["routing_rules"] = rules

        caps = []
        for row in cur.execute("select * from ops.caps where org_id = %s order by name", (org,)).fetchall():
            project = directory.project_slug(row["project_id"])
            environment = None
            if row["environment_id"] is not None:
                project, environment = directory.environment_of(row["environment_id"])
            cap = _model(
                Cap,
                _drop_none(
                    {
                        "name": row["name"],
                        "scope": row["scope"],
                        "project": project if row["scope"] in ("project", "environment") else None,
                        "environment": environment if row["scope"] == "environment" else None,
                        "pool": row["pool"] if row["scope"] == "pool" else None,
                        "engine": row["engine"] if row["scope"] == "engine" else None,
                        "kind": row["kind"],
                        "limit": row["limit_value"],
                        "enabled": row["enabled"],
                    }
                ),
                f'cap "{row["name"]}"',
            )
            caps.append(cap)
            state.ids[("caps", cap.name)] = row["id"]
        sections["caps"] = caps

        templates = []
        template_names: dict[uuid.UUID, str] = {}
        for row in cur.execute(
            """
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
            (org,),
        ).fetchall():
            key = f"{row['project']}/{row['name']}"
            template_names[row["id"]] = row["name"]
            state.template_versions[key] = row["version"] or 0
            if row["archived_at"] is not None:
                state.archived_templates[key] = row["id"]
                state.archived_definitions[key] = row["content_sha256"] or ""
                continue
            data: dict[str, Any] = {
                "project": row["project"],
                "name": row["name"],
                "description": row["description"],
                "owner": row["owner"],
                "tags": list(row["tags"]),
            }
            if row["version"] is None:
                # A template without a version cannot run; the plan proposes one from the bundle.
                template = JobTemplate.model_construct(**data, tasks=[])
            else:
                data.update(
                    params_schema=row["params_schema"],
                    retries={"max_attempts": row["max_attempts"], "backoff_s": row["retry_backoff_s"]},
                    timeout_s=row["timeout_s"],
                    tasks=row["tasks"],
                )
                template = _model(JobTemplate, data, f'job template "{key}" version {row["version"]}')
            templates.append(template)
            state.ids[("job_templates", key)] = row["id"]
        sections["job_templates"] = templates

        schedules = []
        for row in cur.execute(
            """
            select s.*, p.slug as project, t.name as template, e.name as environment
            from ops.schedules s
            join ops.projects p on p.id = s.project_id
            join ops.job_templates t on t.id = s.template_id
            join ops.environments e on e.id = s.environment_id
            where s.org_id = %s order by p.slug, s.name
            """,
            (org,),
        ).fetchall():
            schedule = _model(
                Schedule,
                {
                    "project": row["project"],
                    "name": row["name"],
                    "template": row["template"],
                    "environment": row["environment"],
                    "cron": row["cron"],
                    "timezone": row["timezone"],
                    "params": row["params"],
                    "enabled": row["enabled"],
                    "description": row["description"],
                },
                f'schedule "{row["project"]}/{row["name"]}"',
            )
            schedules.append(schedule)
            state.ids[("schedules", section_key("schedules", schedule))] = row["id"]
        sections["schedules"] = schedules

        alerts = []
        for row in cur.execute("select * from ops.alert_rules where org_id = %s order by name", (org,)).fetchall():
            alert = _model(
                AlertRule,
                _drop_none(
                    {
                        "name": row["name"],
                        "kind": row["kind"],
                        "match": _drop_none(
                            {
                                "project": directory.project_slug(row["project_id"]),
                                "environment": row["match_environment"],
                                "template": template_names.get(row["match_template_id"])
                                if row["match_template_id"]
                                else None,
                            }
                        ),
                        "threshold": row["threshold"],
                        "window_s": row["window_s"],
                        "severity": row["severity"],
                        "notify": list(row["notify"]),
                        "escalate": row["escalate"],
                        "enabled": row["enabled"],
                        "description": row["description"],
                    }
                ),
                f'alert rule "{row["name"]}"',
            )
            alerts.append(alert)
            state.ids[("alert_rules", alert.name)] = row["id"]
        sections["alert_rules"] = alerts

        gates = []
        for row in cur.execute(
            """
            select g.*, p.slug as project from ops.promotion_gates g join ops.projects p on p.id = g.project_id
            where g.org_id = %s order by p.slug, g.name
            """,
            (org,),
        ).fetchall():
            gate = _model(
                PromotionGate,
                _drop_none(
                    {
                        "project": row["project"],
                        "name": row["name"],
                        "template": template_names.get(row["template_id"]) if row["template_id"] else None,
                        "from_environment": row["from_environment"],
                        "to_environment": row["to_environment"],
                        "min_successful_runs": row["min_successful_runs"],
                        "required_approvals": row["required_approvals"],
                        "approvers": list(row["approvers"]),
                        "required_checks": list(row["required_checks"]),
                        "enabled": row["enabled"],
                        "description": row["description"],
                    }
                ),
                f'promotion gate "{row["project"]}/{row["name"]}"',
            )
            gates.append(gate)
            state.ids[("promotion_gates", section_key("promotion_gates", gate))] = row["id"]
        sections["promotion_gates"] = gates
    # Rows were validated one by one above; the sections only need assembling.
    state.bundle = Bundle.model_construct(None, org=directory.slug, **sections)
    return state


# Writes ---------------------------------------------------------------------------------------------


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
    statement = sql.SQL("insert into ops.{} ({}) values ({}) returning id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )
    row = conn.execute(statement, [values[c] for c in columns]).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def update_row(conn: psycopg.Connection[Any], table: str, row_id: uuid.UUID, values: Mapping[str, Any]) -> None:
    """Update one row of ``ops.<table>`` by id, stamping ``updated_at``."""
    columns = list(values)
    statement = sql.SQL("update ops.{} set {}, updated_at = now() where id = %s").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in columns),
    )
    conn.execute(statement, [*(values[c] for c in columns), row_id])


def delete_row(conn: psycopg.Connection[Any], table: str, row_id: uuid.UUID) -> None:
    """Delete one row of ``ops.<table>`` by id."""
    conn.execute(sql.SQL("delete from ops.{} where id = %s").format(sql.Identifier(table)), (row_id,))


def park_routing_positions(conn: psycopg.Connection[Any], rule_ids: list[uuid.UUID]) -> None:
    """Move rules out of the way (negative positions) so a reordering never trips unique (org, position)."""
    for offset, rule_id in enumerate(rule_ids):
        conn.execute("update ops.routing_rules set position = %s where id = %s", (-2_000_000_000 + offset, rule_id))


def insert_template_version(
    conn: psycopg.Connection[Any], template_id: uuid.UUID, template: JobTemplate, *, actor: str
) -> int:
    """Add the next version of a template from its bundle definition; returns the version number."""
    row = conn.execute(
        "select coalesce(max(version), 0) + 1 from ops.job_template_versions where template_id = %s", (template_id,)
    ).fetchone()
    assert row is not None
    version = int(row[0])
    definition = template.definition()
    conn.execute(
        "insert into ops.job_template_versions (template_id, version, params_schema, tasks, max_attempts, "
        "retry_backoff_s, timeout_s, content_sha256, created_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            template_id,
            version,
            Jsonb(definition["params_schema"]),
            Jsonb(definition["tasks"]),
            template.retries.max_attempts,
            template.retries.backoff_s,
            template.timeout_s,
            template.definition_sha256(),
            actor,
        ),
    )
    return version


def archive_template(conn: psycopg.Connection[Any], template_id: uuid.UUID) -> None:
    """Archive a template removed from the bundle (versions are history and stay)."""
    conn.execute("update ops.job_templates set archived_at = now(), updated_at = now() where id = %s", (template_id,))


def restore_template(conn: psycopg.Connection[Any], template_id: uuid.UUID) -> None:
    """Bring an archived template back."""
    conn.execute("update ops.job_templates set archived_at = null, updated_at = now() where id = %s", (template_id,))


# Bundle item -> column values -------------------------------------------------------------------


def row_values(section: str, item: Any, directory: OrgDirectory) -> dict[str, Any]:
    """The columns of the row an item deploys to (ids resolved through ``directory``)."""
    org = directory.org_id
    if section == "routing_rules":
        rule: RoutingRule = item
        return {
            "org_id": org,
            "name": rule.name,
            "position": rule.position,
            "match_project_id": directory.projects[rule.match.project] if rule.match.project else None,
            "match_environment": rule.match.environment,
            "match_engine": rule.match.engine,
            "match_labels": list(rule.match.labels),
            "match_tags": list(rule.match.tags),
            "pool": rule.pool,
            "required_labels": list(rule.required_labels),
            "owner": rule.owner,
            "escalation": Jsonb(list(rule.escalation)),
            "enabled": rule.enabled,
        }
    if section == "caps":
        cap: Cap = item
        return {
            "org_id": org,
            "name": cap.name,
            "scope": cap.scope,
            "project_id": directory.projects[cap.project] if cap.scope == "project" and cap.project else None,
            "environment_id": directory.environments[(cap.project, cap.environment)]
            if cap.scope == "environment" and cap.project and cap.environment
            else None,
            "pool": cap.pool,
            "engine": cap.engine,
            "kind": cap.kind,
            "limit_value": cap.limit,
            "enabled": cap.enabled,
        }
    if section == "job_templates":
        template: JobTemplate = item
        return {
            "org_id": org,
            "project_id": directory.projects[template.project],
            "name": template.name,
            "description": template.description,
            "owner": template.owner,
            "tags": list(template.tags),
        }
    raise ValueError(f"row_values: {section} needs template ids; use a dedicated builder")


def schedule_values(schedule: Schedule, directory: OrgDirectory, template_id: uuid.UUID) -> dict[str, Any]:
    """Columns of a schedule's row."""
    return {
        "org_id": directory.org_id,
        "project_id": directory.projects[schedule.project],
        "name": schedule.name,
        "template_id": template_id,
        "environment_id": directory.environments[(schedule.project, schedule.environment)],
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "params": Jsonb(schedule.params),
        "enabled": schedule.enabled,
        "description": schedule.description,
    }


def alert_values(rule: AlertRule, directory: OrgDirectory, template_id: uuid.UUID | None) -> dict[str, Any]:
    """Columns of an alert rule's row."""
    return {
        "org_id": directory.org_id,
        "name": rule.name,
        "kind": rule.kind,
        "project_id": directory.projects[rule.match.project] if rule.match.project else None,
        "match_environment": rule.match.environment,
        "match_template_id": template_id,
        "threshold": rule.threshold,
        "window_s": rule.window_s,
        "severity": rule.severity,
        "notify": list(rule.notify),
        "escalate": rule.escalate,
        "enabled": rule.enabled,
        "description": rule.description,
    }


def gate_values(gate: PromotionGate, directory: OrgDirectory, template_id: uuid.UUID | None) -> dict[str, Any]:
    """Columns of a promotion gate's row."""
    return {
        "org_id": directory.org_id,
        "project_id": directory.projects[gate.project],
        "name": gate.name,
        "template_id": template_id,
        "from_environment": gate.from_environment,
        "to_environment": gate.to_environment,
        "min_successful_runs": gate.min_successful_runs,
        "required_approvals": gate.required_approvals,
        "approvers": list(gate.approvers),
        "required_checks": list(gate.required_checks),
        "enabled": gate.enabled,
        "description": gate.description,
    }


def template_ids(conn: psycopg.Connection[Any], org_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """Every template of the org (archived included) by ``project/name``."""
    return {
        f"{slug}/{name}": tid
        for tid, slug, name in conn.execute(
            "select t.id, p.slug, t.name from ops.job_templates t join ops.projects p on p.id = t.project_id "
            "where t.org_id = %s",
            (org_id,),
        ).fetchall()
    }
