"""The bundle's schema as pydantic models: what each YAML file may hold, and the merged bundle.

These models are the one definition of the format: the loader validates files with them, the plan
compares them, export writes them, and ``spec/bundle.schema.json`` is generated from ``BundleFile``
(``lakehouse bundle schema``; a test fails when the published file is stale).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from control_room.bundle.source import published_file_config
from control_room.dashboards.models import DashboardFile

# Patterns match the check constraints of the ops schema, so a valid bundle deploys.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # org and project slugs
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # templates, schedules, alert rules, promotion gates
POOL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ENGINE_PATTERN = r"^[a-z][a-z0-9_-]{0,40}$"
TASK_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"

EnvironmentName = Literal["dev", "staging", "prod"]
ENVIRONMENT_ORDER: tuple[str, ...] = ("dev", "staging", "prod")
CapScope = Literal["org", "project", "environment", "pool", "engine"]
CapKind = Literal[
    "concurrent_tasks",
    "max_runtime_s",
    "runs_per_day",
    "compute_seconds_per_day",
    "scanned_bytes_per_query",
    "max_memory_mb",
    "max_cores",
    "max_output_bytes",
]
AlertKind = Literal[
    "run_failed", "task_failed", "run_duration", "queue_wait", "cap_breach", "executor_offline",
    "sla", "schedule_missed", "dataset_freshness", "event_match",
]  # fmt: skip
Severity = Literal["info", "warning", "critical"]

# Sections of a bundle, in the order they are planned, applied and exported.
SECTIONS: tuple[str, ...] = (
    "routing_rules",
    "caps",
    "job_templates",
    "schedules",
    "alert_rules",
    "promotion_gates",
    "alert_channels",
    # Access policies (issue 22): service principals before the groups that hold them, groups before the
    # policies that name them.
    "service_principals",
    "groups",
    "access_policies",
    # Serving endpoints (issue 23) after the caps that bound their replicas.
    "serving_endpoints",
    # Dashboards (issue 24): per project, versioned; they name nothing the others need.
    "dashboards",
    # Project settings (issue 25): one item per project, never created or deleted (projects are not the
    # bundle's); a project the bundle does not list runs with the defaults.
    "settings",
)


class BundleModel(BaseModel):
    """Strict and closed: an unknown field is an error (that is how typos are caught)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _name(description: str) -> Any:
    return Field(pattern=NAME_PATTERN, description=description)


# Job templates ------------------------------------------------------------------------------------


class Retries(BundleModel):
    """Retry policy of every task of a template (a task may override it)."""

    max_attempts: int = Field(default=3, ge=1, le=100, description="Attempts per task, the first included.")
    backoff_s: int = Field(default=10, ge=0, le=86400, description="Base of the exponential backoff, seconds.")


class TaskTemplate(BundleModel):
    """One task of a job template; ``config`` holds the engine's own fields (command, sql, ...)."""

    key: str = Field(pattern=TASK_KEY_PATTERN, description="Unique within the template.")
    engine: str = Field(pattern=ENGINE_PATTERN, description="shell, python, dbt, spark, trino, duckdb, ...")
    depends_on: list[str] = Field(default_factory=list, description="Keys of tasks that must succeed first.")
    config: dict[str, Any] = Field(default_factory=dict, description="Engine-specific fields, passed to the engine.")
    timeout_s: int | None = Field(default=None, ge=1, le=2_147_483_647, description="Overrides the template's.")
    max_attempts: int | None = Field(default=None, ge=1, le=100, description="Overrides retries.max_attempts.")
    retry_backoff_s: int | None = Field(default=None, ge=0, le=86400, description="Overrides retries.backoff_s.")
    pool: str | None = Field(default=None, pattern=POOL_PATTERN, description="Pins the pool; skips routing.")
    labels: list[str] = Field(default_factory=list, description="Labels the routing matrix matches on.")
    required_labels: list[str] = Field(default_factory=list, description="Labels the executor must have.")


class JobTemplate(BundleModel):
    """A versioned job definition of a project; a changed definition deploys as a new version."""

    project: str = Field(pattern=SLUG_PATTERN, description="Project slug.")
    name: str = _name("Unique within the project.")
    description: str = ""
    owner: str | None = Field(default=None, description="Who answers for it (e-mail or team).")
    tags: list[str] = Field(default_factory=list, description="Tags of runs started from this template.")
    params_schema: dict[str, Any] = Field(
        default_factory=dict, description="JSON Schema (2020-12) of the parameters a run of this template takes."
    )
    retries: Retries = Field(default_factory=Retries)
    timeout_s: int | None = Field(default=None, ge=1, le=2_147_483_647, description="Per-task timeout, seconds.")
    tasks: list[TaskTemplate] = Field(min_length=1, max_length=1000)

    def definition(self) -> dict[str, Any]:
        """What a version holds (params schema, tasks, retries, timeout): a change here is a new version."""
        return {
            "params_schema": self.params_schema,
            "tasks": [task.model_dump(mode="json", exclude_none=True) for task in self.tasks],
            "retries": self.retries.model_dump(mode="json"),
            "timeout_s": self.timeout_s,
        }

    def definition_sha256(self) -> str:
        """SHA-256 of the canonical JSON of ``definition()``."""
        canonical = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


# Schedules ----------------------------------------------------------------------------------------


class Schedule(BundleModel):
    """Starts runs of a job template in one environment on a cron expression."""

    project: str = Field(pattern=SLUG_PATTERN, description="Project slug.")
    name: str = _name("Unique within the project.")
    template: str = _name("A job template of the same project (defined in the bundle).")
    environment: EnvironmentName
    cron: str = Field(
        pattern=r"^\S+(\s+\S+)*$", description='Five cron fields ("30 2 * * *") or a macro such as "@daily".'
    )
    timezone: str = Field(default="UTC", description='IANA time zone the cron is read in, e.g. "Europe/Paris".')
    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters; checked against the template.")
    enabled: bool = True
    description: str = ""
    # Scheduler policies (control_room/services/schedules.py); optional, so older bundles stay valid.
    catchup: Literal["none", "latest", "all"] = Field(
        default="latest",
        description="After downtime: none (fire only what is at most misfire_grace_s late), latest (the newest "
        "missed fire only) or all (every missed fire, up to catchup_limit).",
    )
    catchup_limit: int = Field(default=10, ge=1, le=1000, description="With catchup: all, the most fires caught up.")
    overlap: Literal["allow", "skip", "cancel_previous", "queue_one"] = Field(
        default="allow", description="When a fire finds the schedule's previous run still queued or running."
    )
    jitter_s: int = Field(default=0, ge=0, le=3600, description="Delay each fire by a stable 0..jitter_s seconds.")
    misfire_grace_s: int = Field(
        default=60, ge=1, le=86400, description="With catchup: none, how late a fire may still start, seconds."
    )


# Routing matrix -----------------------------------------------------------------------------------


class RouteMatch(BundleModel):
    """What a task must match; an omitted field matches anything."""

    project: str | None = Field(default=None, pattern=SLUG_PATTERN)
    environment: EnvironmentName | None = None
    engine: str | None = Field(default=None, pattern=ENGINE_PATTERN)
    labels: list[str] = Field(default_factory=list, description="All of these task labels.")
    tags: list[str] = Field(default_factory=list, description="All of these run tags.")


class RoutingRule(BundleModel):
    """The first enabled rule (lowest position) matching a task picks its pool and required labels."""

    name: str = Field(min_length=1, max_length=200)
    position: int = Field(ge=-2_147_483_648, le=2_147_483_647, description="Evaluation order, unique.")
    match: RouteMatch = Field(default_factory=RouteMatch)
    pool: str = Field(min_length=1, max_length=200)
    required_labels: list[str] = Field(default_factory=list)
    allow_pool_override: bool = Field(
        default=False,
        description="When true, a task this rule matches may name its own pool in its spec (`pool`); otherwise the "
        "spec's pool is ignored and the rule's pool is used. Off by default: routing decides the pool.",
    )
    owner: str | None = Field(default=None, description="Who is alerted first for matching work.")
    escalation: list[str] = Field(default_factory=list, description="Who is alerted next, in order.")
    enabled: bool = True


# Caps -----------------------------------------------------------------------------------------------


class Cap(BundleModel):
    """A limit on an org, project, environment, pool or engine."""

    name: str = Field(min_length=1, max_length=200)
    scope: CapScope
    project: str | None = Field(default=None, pattern=SLUG_PATTERN, description="For project and environment scope.")
    environment: EnvironmentName | None = Field(default=None, description="For environment scope.")
    pool: str | None = Field(default=None, min_length=1, description="For pool scope.")
    engine: str | None = Field(default=None, pattern=ENGINE_PATTERN, description="For engine scope.")
    kind: CapKind
    limit: int = Field(ge=0, le=9_223_372_036_854_775_807)
    enabled: bool = True


# Which scope-identifying fields each cap scope needs; the others must be absent.
CAP_SCOPE_FIELDS: dict[str, tuple[str, ...]] = {
    "org": (),
    "project": ("project",),
    "environment": ("project", "environment"),
    "pool": ("pool",),
    "engine": ("engine",),
}


# Alert rules ----------------------------------------------------------------------------------------


class AlertMatch(BundleModel):
    """Narrows an alert rule; an omitted field matches anything."""

    project: str | None = Field(default=None, pattern=SLUG_PATTERN)
    environment: EnvironmentName | None = None
    template: str | None = Field(default=None, pattern=NAME_PATTERN, description="Needs project.")
    pool: str | None = Field(default=None, description="queue_wait, executor_offline: only this pool.")


class AlertRule(BundleModel):
    """When to alert, how loudly, and whom to tell."""

    name: str = _name("Unique within the org.")
    kind: AlertKind
    match: AlertMatch = Field(default_factory=AlertMatch)
    threshold: int | None = Field(
        default=None,
        ge=1,
        le=2_147_483_647,
        description="run_failed: consecutive failures; run_duration, queue_wait, executor_offline: seconds.",
    )
    window_s: int | None = Field(default=None, ge=1, le=2_147_483_647, description="Evaluation window, seconds.")
    severity: Severity = "warning"
    notify: list[str] = Field(default_factory=list, description="E-mail addresses, slack:#channel, webhook URLs.")
    escalate: bool = Field(
        default=True,
        description="Also notify the routing rule's owner and escalation chain (when alert delivery exists).",
    )
    enabled: bool = True
    description: str = ""
    # Issue 20's kinds and escalation; optional, so bundles written before keep their meaning.
    factor: float | None = Field(
        default=None, gt=0, description="run_duration: also fire over factor x the job's p95 of its last runs."
    )
    baseline_runs: int = Field(default=20, ge=2, le=1000, description="run_duration: runs the p95 is taken over.")
    sla_time: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description='sla: "HH:MM" (quote it in YAML).'
    )
    sla_timezone: str = Field(default="UTC", description="sla: the time zone of sla_time.")
    cap_percent: int | None = Field(default=None, ge=1, le=1000, description="cap_breach: fire at this % of a cap.")
    event_type: str | None = Field(default=None, description="event_match: the event type.")
    event_level: Literal["debug", "info", "warning", "error"] | None = Field(
        default=None, description="event_match: the minimum level."
    )
    event_attributes: dict[str, Any] = Field(
        default_factory=dict, description="event_match: key/values the event's data must contain."
    )
    dataset_name: str | None = Field(default=None, description="dataset_freshness: the dataset's name.")
    escalate_after_s: int = Field(
        default=900, ge=1, le=2_147_483_647, description="Escalate one level when not acknowledged in this time."
    )


ALERT_KINDS_NEEDING_THRESHOLD: frozenset[str] = frozenset({"run_duration", "queue_wait"})

ENV_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,127}$"


class AlertChannel(BundleModel):
    """A named place alert rules send to (``slack:<name>``, ``webhook:<name>``). Its URL and signing secret
    are the names of environment variables of the control room: a bundle never holds a secret."""

    name: str = _name("Unique within the org; rules say slack:<name> or webhook:<name>.")
    kind: Literal["slack", "webhook", "email"]
    url_env: str | None = Field(
        default=None, pattern=ENV_NAME_PATTERN, description="slack, webhook: the variable holding the URL."
    )
    secret_env: str | None = Field(
        default=None, pattern=ENV_NAME_PATTERN, description="webhook: the variable holding the HMAC signing secret."
    )
    address: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$", description="email: the address.")

    @model_validator(mode="after")
    def _target_given(self) -> AlertChannel:
        if self.kind == "email" and self.address is None:
            raise ValueError("an email channel needs address")
        if self.kind != "email" and self.url_env is None:
            raise ValueError(f"a {self.kind} channel needs url_env (the environment variable holding its URL)")
        return self


# Promotion gates ------------------------------------------------------------------------------------


class PromotionGate(BundleModel):
    """What a template version must show before it is promoted to the next environment."""

    project: str = Field(pattern=SLUG_PATTERN, description="Project slug.")
    name: str = _name("Unique within the project.")
    template: str | None = Field(default=None, pattern=NAME_PATTERN, description="Omitted: every template.")
    from_environment: EnvironmentName
    to_environment: EnvironmentName
    min_successful_runs: int = Field(default=1, ge=0, le=1000, description="In from_environment.")
    window_days: int = Field(default=30, ge=1, le=3650, description="Runs of the last N days count.")
    required_approvals: int = Field(default=0, ge=0, le=10)
    approvers: list[str] = Field(default_factory=list)
    required_checks: list[str] = Field(default_factory=list, description="CI checks that must have passed.")
    enabled: bool = True
    description: str = ""
    check_tasks: list[TaskTemplate] = Field(
        default_factory=list,
        max_length=100,
        description="Custom checks (a data-quality suite, a smoke test): tasks the gate runs as one run in "
        "to_environment when a request opens and whenever its evidence changes; the check passes iff that run "
        "succeeded. The run's parameters (job, version, from_environment, to_environment, promotion_request) "
        "reach the tasks as LAKEHOUSE_PARAM_* variables.",
    )
    notify: list[str] = Field(
        default_factory=list,
        description="Also told when a request opens and when it is decided (approvers always are): e-mail "
        "addresses, slack:<channel>, webhook:<channel> or webhook URLs, as in alert rules.",
    )
    allow_unpromoted_runs: bool = Field(
        default=False,
        description="to_environment may also run a version other than its deployed one when a run names it "
        "explicitly (a run naming none, and every schedule, still runs the deployed version).",
    )
    rollback_approvals: int = Field(
        default=0,
        ge=0,
        le=10,
        description="0: a project admin rolls to_environment back at once. N > 0: a rollback opens a request that "
        "needs N approvals from the approvers (never the requester's) and no checks.",
    )


# Access policies (issue 22) -----------------------------------------------------------------------

PRINCIPAL_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"  # groups and service principals
POLICY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class ServicePrincipal(BundleModel):
    """A non-human principal of the org; a job template may run as one."""

    name: str = Field(pattern=PRINCIPAL_PATTERN, description="Unique within the org, e.g. nightly-etl.")
    description: str = Field(default="", max_length=1000)


class GroupMember(BundleModel):
    kind: Literal["user", "service_principal"] = "user"
    name: str = Field(min_length=1, max_length=320, description="A user's e-mail or a service principal's name.")


class Group(BundleModel):
    """An org-level group that access policies name; exactly these members."""

    name: str = Field(pattern=PRINCIPAL_PATTERN, description="Unique within the org, e.g. analysts.")
    description: str = Field(default="", max_length=1000)
    members: list[GroupMember] = Field(default_factory=list)


class PolicyRule(BaseModel):
    """The fields of an access policy, in this order: the bundle's ``AccessPolicy`` and the API's ``PolicyBody``
    both build on it (each narrows its name, target and principal in place)."""

    name: str
    kind: Literal["grant", "deny", "row_filter", "column_mask"]
    target_kind: Literal["dataset", "schema", "tag"]
    target: str = Field(min_length=1, max_length=1000)
    principal_kind: Literal["everyone", "group", "user", "service_principal"] = "everyone"
    principal: str = ""
    privilege: Literal["read", "write", "admin"] | None = None
    row_filter: str | None = Field(default=None, max_length=4000)
    mask_column: str | None = Field(default=None, max_length=200)
    mask_kind: Literal["null", "hash", "redact", "partial", "expression"] | None = None
    mask_expression: str | None = Field(default=None, max_length=4000)
    description: str = Field(default="", max_length=1000)


class AccessPolicy(PolicyRule, BundleModel):
    """A grant, deny, row filter or column mask on a dataset (by name), a schema (a name prefix) or a tag."""

    name: str = Field(pattern=POLICY_NAME_PATTERN, description="Unique within the org, e.g. mask-email.")
    target_kind: Literal["dataset", "schema", "tag"] = "dataset"
    target: str = Field(min_length=1, max_length=1000, description="A dataset's full name, a schema prefix or a tag.")
    principal: str = Field(default="", max_length=320)


# Serving endpoints (issue 23) -----------------------------------------------------------------------

ENDPOINT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class ServedVersion(BundleModel):
    """One registered model version an endpoint serves and its share of the traffic."""

    version: int = Field(ge=1, le=9_999_999_999, description="A version of the registered model.")
    percent: int = Field(default=100, ge=0, le=100, description="Share of the requests; the versions add up to 100.")
    model: str | None = Field(
        default=None, min_length=1, max_length=256, description="Another registered model (default: the endpoint's)."
    )


class ServingEndpoint(BundleModel):
    """A model serving endpoint: one or two model versions with a traffic split, each run as N replicas
    (service tasks of engine serving) in a pool; invocations go through the control room's proxy."""

    project: str = Field(pattern=SLUG_PATTERN, description="Project slug.")
    name: str = Field(pattern=ENDPOINT_NAME_PATTERN, description="Unique within the project; the invocations URL.")
    environment: EnvironmentName = Field(default="dev", description="The environment its replicas run in.")
    model: str = Field(min_length=1, max_length=256, description="The registered model (MLflow registry).")
    versions: list[ServedVersion] = Field(
        min_length=1,
        max_length=2,
        description="The first is the primary; a second one is a canary. Percents add up to 100.",
    )
    replicas: int = Field(default=1, ge=1, le=16, description="Replicas per served version.")
    pool: str | None = Field(default=None, pattern=POOL_PATTERN, description="Executor pool (default: routing).")
    max_memory_mb: int | None = Field(default=None, ge=64, le=2_147_483_647, description="Memory cap per replica.")
    status: Literal["running", "stopped"] = Field(default="running", description="stopped: no replica runs.")

    def routes(self) -> list[dict[str, Any]]:
        """The traffic split as the control plane stores it (``{model, version, percent}`` per version)."""
        return [
            {"model": v.model or self.model, "version": str(v.version), "percent": v.percent} for v in self.versions
        ]


# Dashboards (issue 24) ----------------------------------------------------------------------------


class Dashboard(BundleModel):
    """A project's dashboard; a changed definition deploys as a new version, a removed one is archived."""

    project: str = Field(pattern=SLUG_PATTERN, description="Project slug.")
    name: str = Field(pattern=SLUG_PATTERN, description="The dashboard's slug, unique within the project.")
    dashboard: DashboardFile = Field(
        description="The dashboard file (spec/dashboard.schema.json): datasets, charts, filters, layout."
    )


# Project settings (issue 25) ----------------------------------------------------------------------


class ProjectSettings(BundleModel):
    """A project's settings. A project the bundle does not list gets the defaults (deploying sets them back)."""

    project: str = Field(pattern=SLUG_PATTERN, description="Project slug (an existing project of the org).")
    event_retention_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="Days after a run finished before its events and attempts move to the Parquet archive in the "
        "artifact store (0: kept in Postgres forever).",
    )
    require_available_engine: bool = Field(
        default=False,
        description="Refuse a run whose engine no live executor of the routed pool offers (default: accept it "
        "with a warning).",
    )

    def is_default(self) -> bool:
        """True when every setting is at its default (the canonical bundle leaves such a project out)."""
        return self == ProjectSettings(project=self.project)


# Files and the merged bundle ---------------------------------------------------------------------


class BundleSections(BundleModel):
    """The configuration sections; any file of a bundle may hold any of them."""

    routing_rules: list[RoutingRule] = Field(default_factory=list, description="The routing matrix.")
    caps: list[Cap] = Field(default_factory=list)
    job_templates: list[JobTemplate] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    alert_rules: list[AlertRule] = Field(default_factory=list)
    promotion_gates: list[PromotionGate] = Field(default_factory=list)
    alert_channels: list[AlertChannel] = Field(default_factory=list, description="Where alert rules deliver.")
    service_principals: list[ServicePrincipal] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list, description="Groups of users and service principals.")
    access_policies: list[AccessPolicy] = Field(default_factory=list, description="Grants, filters and masks.")
    serving_endpoints: list[ServingEndpoint] = Field(default_factory=list, description="Model serving endpoints.")
    dashboards: list[Dashboard] = Field(default_factory=list, description="Projects' dashboards, versioned.")
    settings: list[ProjectSettings] = Field(
        default_factory=list, description="Per-project settings (event retention, ...); unlisted projects: defaults."
    )


class BundleFile(BundleSections):
    """One YAML file of a bundle directory. ``org`` belongs in ``bundle.yaml`` only."""

    model_config = published_file_config("Lakehouse Control Room bundle file")

    org: str | None = Field(default=None, pattern=SLUG_PATTERN, description="The org this bundle configures.")


class Bundle(BundleSections):
    """A whole bundle: the org's desired configuration, every section complete."""

    org: str = Field(pattern=SLUG_PATTERN)


def section_key(section: str, item: BaseModel) -> str:
    """How rows of a section are identified across bundle and control plane (slugs, never uuids)."""
    if section in ("job_templates", "schedules", "promotion_gates", "serving_endpoints", "dashboards"):
        return f"{item.project}/{item.name}"  # type: ignore[attr-defined]
    if section == "settings":
        return str(item.project)  # type: ignore[attr-defined]
    return str(item.name)  # type: ignore[attr-defined]


def sorted_bundle(bundle: Bundle) -> Bundle:
    """The bundle with each section in canonical order (routing by position, others by key); a project whose
    settings are all at their defaults is left out of ``settings`` (listing it or not means the same)."""
    ordered: dict[str, Any] = {"org": bundle.org}
    for section in SECTIONS:
        items = list(getattr(bundle, section))
        if section == "settings":
            items = [item for item in items if not item.is_default()]
        if section == "routing_rules":
            items.sort(key=lambda rule: (rule.position, rule.name))
        else:
            items.sort(key=lambda item: section_key(section, item))
        ordered[section] = items
    return Bundle.model_construct(**ordered)


def bundle_json_schema() -> dict[str, Any]:
    """The published JSON Schema of one bundle file (spec/bundle.schema.json)."""
    return BundleFile.model_json_schema(mode="validation")
