"""Bundle items <-> an org's live rows: reads the live configuration as a bundle, builds the rows a plan writes.

Rows are named by slugs in bundles and by uuids in the database; ``OrgDirectory`` translates. The
statements themselves live in ``control_room/services/bundles.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from control_room.bundle import access
from control_room.bundle.models import (
    SECTIONS,
    AlertChannel,
    AlertRule,
    Bundle,
    Cap,
    Dashboard,
    JobTemplate,
    ProjectSettings,
    PromotionGate,
    RoutingRule,
    Schedule,
    ServingEndpoint,
    section_key,
)
from control_room.services import bundles

if TYPE_CHECKING:  # rows arrive as these models (services/bundles.py loads them when it reads)
    from control_room.db import tables

ModelT = TypeVar("ModelT", bound=BaseModel)


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
    org_id = bundles.org_id(conn, org_slug)
    if org_id is None:
        known = bundles.org_slugs(conn)
        raise UnknownOrg(f'org "{org_slug}" does not exist on the control plane (orgs: {", ".join(known) or "none"})')
    return OrgDirectory(
        org_id=org_id,
        slug=org_slug,
        projects=bundles.project_ids(conn, org_id),
        environments=bundles.environment_ids(conn, org_id),
    )


@dataclass
class LiveState:
    """An org's live configuration as a bundle, with the ids and version numbers behind it."""

    bundle: Bundle
    ids: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    # Latest version per template key, archived templates included (they may come back).
    template_versions: dict[str, int] = field(default_factory=dict)
    archived_templates: dict[str, uuid.UUID] = field(default_factory=dict)
    archived_definitions: dict[str, str] = field(default_factory=dict)
    # Template names by id, for the alert rules and gates that point at templates.
    template_names: dict[uuid.UUID, str] = field(default_factory=dict)
    # Latest version per dashboard key (project/name), archived dashboards included.
    dashboard_versions: dict[str, int] = field(default_factory=dict)
    archived_dashboards: set[str] = field(default_factory=set)


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


# Live row -> bundle item, one reader per section ------------------------------------------------


def _routing_rule(row: tables.RoutingRule, directory: OrgDirectory, state: LiveState) -> RoutingRule:
    match = {
        "project": directory.project_slug(row.match_project_id),
        "environment": row.match_environment,
        "engine": row.match_engine,
        "labels": list(row.match_labels),
        "tags": list(row.match_tags),
    }
    data = row.model_dump(
        include={"name", "position", "pool", "required_labels", "allow_pool_override", "owner", "escalation", "enabled"}
    )
    return _model(RoutingRule, {**data, "match": _drop_none(match)}, f'routing rule "{row.name}"')


def _cap(row: tables.Cap, directory: OrgDirectory, state: LiveState) -> Cap:
    project = directory.project_slug(row.project_id)
    environment = None
    if row.environment_id is not None:
        project, environment = directory.environment_of(row.environment_id)
    data = {
        "name": row.name,
        "scope": row.scope,
        "project": project if row.scope in ("project", "environment") else None,
        "environment": environment if row.scope == "environment" else None,
        "pool": row.pool if row.scope == "pool" else None,
        "engine": row.engine if row.scope == "engine" else None,
        "kind": row.kind,
        "limit": row.limit_value,
        "enabled": row.enabled,
    }
    return _model(Cap, _drop_none(data), f'cap "{row.name}"')


def _job_template(row: dict[str, Any], directory: OrgDirectory, state: LiveState) -> JobTemplate | None:
    """The template at its latest version; None for an archived one (remembered in ``state``)."""
    key = f"{row['project']}/{row['name']}"
    state.template_names[row["id"]] = row["name"]
    state.template_versions[key] = row["version"] or 0
    if row["archived_at"] is not None:
        state.archived_templates[key] = row["id"]
        state.archived_definitions[key] = row["content_sha256"] or ""
        return None
    data = template_fields(row)
    if row["version"] is None:
        # A template without a version cannot run; the plan proposes one from the bundle.
        return JobTemplate.model_construct(**data, tasks=[])
    return _model(JobTemplate, data | version_fields(row), f'job template "{key}" version {row["version"]}')


def _schedule(row: dict[str, Any], directory: OrgDirectory, state: LiveState) -> Schedule:
    fields = ("project", "name", "template", "environment", "cron", "timezone", "params", "enabled", "description",
              "catchup", "catchup_limit", "overlap", "jitter_s", "misfire_grace_s")  # fmt: skip
    return _model(Schedule, {name: row[name] for name in fields}, f'schedule "{row["project"]}/{row["name"]}"')


def _template_name(state: LiveState, template_id: uuid.UUID | None) -> str | None:
    return state.template_names.get(template_id) if template_id else None


def _alert_rule(row: tables.AlertRule, directory: OrgDirectory, state: LiveState) -> AlertRule:
    match = {
        "project": directory.project_slug(row.project_id),
        "environment": row.match_environment,
        "template": _template_name(state, row.match_template_id),
        "pool": row.match_pool,
    }
    fields = {"name", "kind", "threshold", "window_s", "severity", "notify", "escalate", "enabled", "description"}
    data = {
        **row.model_dump(include=fields | _ALERT_COLUMNS_ISSUE_20),
        "sla_time": row.sla_time.strftime("%H:%M") if row.sla_time else None,
        "event_attributes": row.event_attributes,
        "match": _drop_none(match),
    }
    return _model(AlertRule, _drop_none(data), f'alert rule "{row.name}"')


def _promotion_gate(row: dict[str, Any], directory: OrgDirectory, state: LiveState) -> PromotionGate:
    data = {
        "project": row["project"],
        "name": row["name"],
        "template": _template_name(state, row["template_id"]),
        "from_environment": row["from_environment"],
        "to_environment": row["to_environment"],
        "min_successful_runs": row["min_successful_runs"],
        "window_days": row["window_days"],
        "required_approvals": row["required_approvals"],
        "approvers": list(row["approvers"]),
        "required_checks": list(row["required_checks"]),
        "enabled": row["enabled"],
        "description": row["description"],
        "check_tasks": list(row["check_tasks"]),
        "notify": list(row["notify"]),
        "allow_unpromoted_runs": row["allow_unpromoted_runs"],
        "rollback_approvals": row["rollback_approvals"],
    }
    return _model(PromotionGate, _drop_none(data), f'promotion gate "{row["project"]}/{row["name"]}"')


def _alert_channel(row: tables.AlertChannel, directory: OrgDirectory, state: LiveState) -> AlertChannel:
    data = row.model_dump(include=_CHANNEL_COLUMNS)
    return _model(AlertChannel, _drop_none(data), f'alert channel "{row.name}"')


def _serving_endpoint(row: dict[str, Any], directory: OrgDirectory, state: LiveState) -> ServingEndpoint:
    routes = row["routes"] or []
    model = routes[0]["model"] if routes else ""
    versions = [
        _drop_none(
            {
                "version": int(route["version"]),
                "percent": int(route["percent"]),
                "model": route["model"] if route["model"] != model else None,
            }
        )
        for route in routes
    ]
    data = {
        "project": row["project"],
        "name": row["name"],
        "environment": row["environment"],
        "model": model,
        "versions": versions,
        "replicas": row["replicas"],
        "pool": row["pool"],
        "max_memory_mb": row["max_memory_mb"],
        "status": row["status"],
    }
    return _model(ServingEndpoint, _drop_none(data), f'serving endpoint "{row["project"]}/{row["name"]}"')


def _dashboard(row: dict[str, Any], directory: OrgDirectory, state: LiveState) -> Dashboard | None:
    """The dashboard at its latest version; None for an archived one (remembered in ``state``)."""
    key = f"{row['project']}/{row['name']}"
    state.dashboard_versions[key] = int(row["version"])
    if row["archived_at"] is not None:
        state.archived_dashboards.add(key)
        return None
    data = {"project": row["project"], "name": row["name"], "dashboard": row["spec"]}
    return _model(Dashboard, data, f'dashboard "{key}" version {row["version"]}')


def _project_settings(row: dict[str, Any], directory: OrgDirectory, state: LiveState) -> ProjectSettings:
    data = {key: row[key] for key in ("project", "event_retention_days", "require_available_engine")}
    return _model(ProjectSettings, data, f'the settings of project "{row["project"]}"')


Reader = Callable[[Any, OrgDirectory, LiveState], BaseModel | None]
# In SECTIONS order: templates are read before the alert rules and gates that name them.
_READERS: dict[str, Reader] = {
    "routing_rules": _routing_rule,
    "caps": _cap,
    "job_templates": _job_template,
    "schedules": _schedule,
    "alert_rules": _alert_rule,
    "promotion_gates": _promotion_gate,
    "alert_channels": _alert_channel,
    "service_principals": access.read_service_principal,
    "groups": access.read_group,
    "access_policies": access.read_policy,
    "serving_endpoints": _serving_endpoint,
    "dashboards": _dashboard,
    "settings": _project_settings,
}


def _row_id(row: Any) -> uuid.UUID:
    """The id of a typed table row or of a joined dict row."""
    return uuid.UUID(str(row["id"] if isinstance(row, dict) else row.id))


def read_live(conn: psycopg.Connection[Any], directory: OrgDirectory) -> LiveState:
    """The org's live routing matrix, caps, templates (latest versions), schedules, alerts and gates."""
    state = LiveState(bundle=Bundle(org=directory.slug))
    sections: dict[str, list[Any]] = {}
    for section in SECTIONS:
        items = sections[section] = []
        for row in bundles.live_rows(conn, section, directory.org_id):
            item = _READERS[section](row, directory, state)
            if item is not None:
                items.append(item)
                state.ids[(section, section_key(section, item))] = _row_id(row)
    # Rows were validated one by one above; the sections only need assembling.
    state.bundle = Bundle.model_construct(None, org=directory.slug, **sections)
    return state


# Bundle item -> column values -------------------------------------------------------------------


def template_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle fields of a template that its ``job_templates`` row holds (with its project's slug)."""
    return {
        "project": row["project"],
        "name": row["name"],
        "description": row["description"],
        "owner": row["owner"],
        "tags": list(row["tags"]),
    }


def version_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle fields of a template that one of its ``job_template_versions`` rows holds: the inverse of
    ``version_values``."""
    return {
        "params_schema": row["params_schema"],
        "retries": {"max_attempts": row["max_attempts"], "backoff_s": row["retry_backoff_s"]},
        "timeout_s": row["timeout_s"],
        "tasks": row["tasks"],
    }


def version_values(template: JobTemplate) -> dict[str, Any]:
    """Columns of a new ``job_template_versions`` row for the template's definition."""
    definition = template.definition()
    return {
        "params_schema": definition["params_schema"],
        "tasks": definition["tasks"],
        "max_attempts": template.retries.max_attempts,
        "retry_backoff_s": template.retries.backoff_s,
        "timeout_s": template.timeout_s,
        "content_sha256": template.definition_sha256(),
    }


# Bundle fields that are columns of the same name.
_ROUTING_COLUMNS = {"name", "position", "pool", "required_labels", "allow_pool_override", "owner", "enabled"}
_ALERT_COLUMNS = {"name", "kind", "threshold", "window_s", "severity", "notify", "escalate", "enabled", "description"}
# Issue 20's rule fields (same names as their columns; sla_time and event_attributes are converted).
_ALERT_COLUMNS_ISSUE_20 = {
    "factor", "baseline_runs", "sla_timezone", "cap_percent", "event_type", "event_level", "dataset_name",
    "escalate_after_s",
}  # fmt: skip
_CHANNEL_COLUMNS = {"name", "kind", "url_env", "secret_env", "address"}
_GATE_COLUMNS = {
    "name", "from_environment", "to_environment", "min_successful_runs", "required_approvals", "approvers",
    "required_checks", "enabled", "description", "window_days", "notify", "allow_unpromoted_runs",
    "rollback_approvals",
}  # fmt: skip


def row_values(section: str, item: Any, directory: OrgDirectory) -> dict[str, Any]:
    """The columns of the row an item deploys to (ids resolved through ``directory``)."""
    org = directory.org_id
    if section == "alert_channels":
        channel: AlertChannel = item
        return {**channel.model_dump(include=_CHANNEL_COLUMNS), "org_id": org}
    if section == "routing_rules":
        rule: RoutingRule = item
        match = {f"match_{name}": value for name, value in rule.match.model_dump(exclude={"project"}).items()}
        return {
            **rule.model_dump(include=_ROUTING_COLUMNS),
            **match,
            "org_id": org,
            "match_project_id": directory.projects[rule.match.project] if rule.match.project else None,
            "escalation": Jsonb(list(rule.escalation)),
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


def endpoint_values(endpoint: ServingEndpoint) -> dict[str, Any]:
    """What ``ops.deploy_serving_endpoint`` takes for an endpoint (its project is passed by id)."""
    return {
        "environment": endpoint.environment,
        "name": endpoint.name,
        "routes": endpoint.routes(),
        "replicas": endpoint.replicas,
        "pool": endpoint.pool,
        "max_memory_mb": endpoint.max_memory_mb,
        "status": endpoint.status,
    }


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
        "catchup": schedule.catchup,
        "catchup_limit": schedule.catchup_limit,
        "overlap": schedule.overlap,
        "jitter_s": schedule.jitter_s,
        "misfire_grace_s": schedule.misfire_grace_s,
    }


def alert_values(rule: AlertRule, directory: OrgDirectory, template_id: uuid.UUID | None) -> dict[str, Any]:
    """Columns of an alert rule's row."""
    return {
        **rule.model_dump(include=_ALERT_COLUMNS | _ALERT_COLUMNS_ISSUE_20),
        "sla_time": rule.sla_time,
        "event_attributes": Jsonb(rule.event_attributes),
        "match_pool": rule.match.pool,
        "org_id": directory.org_id,
        "project_id": directory.projects[rule.match.project] if rule.match.project else None,
        "match_environment": rule.match.environment,
        "match_template_id": template_id,
    }


def gate_values(gate: PromotionGate, directory: OrgDirectory, template_id: uuid.UUID | None) -> dict[str, Any]:
    """Columns of a promotion gate's row."""
    return {
        **gate.model_dump(include=_GATE_COLUMNS),
        "check_tasks": Jsonb([task.model_dump(mode="json", exclude_none=True) for task in gate.check_tasks]),
        "org_id": directory.org_id,
        "project_id": directory.projects[gate.project],
        "template_id": template_id,
    }
