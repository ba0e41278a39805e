"""The rows the pages show: every display model a state holds, one module for all (as control_room.db.tables is
for the table rows). States build these from service rows; nothing here reads the database or formats."""

import dataclasses
from typing import Any, TypeVar

import plotly.graph_objects as go

ALL = "all"  # "no filter" in selects (Radix selects cannot hold an empty value)
FormT = TypeVar("FormT")


def with_field(form: FormT, name: str, value: Any) -> FormT:
    """``form`` (one of the dataclasses below) with one field set, as a page's input changes it; a name it does
    not have (the browser sends the name) leaves it as it was."""
    if name not in {f.name for f in dataclasses.fields(form)}:  # type: ignore[arg-type]
        return form
    return dataclasses.replace(form, **{name: value})  # type: ignore[type-var]


# alerts.rows
@dataclasses.dataclass
class AlertRuleRow:
    """One alert rule in the rules table."""

    id: str = ""
    name: str = ""
    kind: str = ""
    scope: str = ""
    condition: str = ""
    severity: str = ""
    notify: str = ""
    enabled: bool = True
    last_fired: str = ""
    open_incidents: int = 0
    incidents: int = 0
    editable: bool = False


@dataclasses.dataclass
class IncidentRow:
    """One incident in the incidents table (and the header of its detail)."""

    id: str = ""
    title: str = ""
    summary: str = ""
    rule: str = ""
    subject: str = ""
    severity: str = ""
    state: str = ""
    count: int = 0
    first_fired: str = ""
    last_fired: str = ""
    acked: str = ""
    snoozed_until: str = ""
    resolved: str = ""
    run_href: str = ""
    escalation_level: int = 0


@dataclasses.dataclass
class TimelineRow:
    """One line of an incident's timeline: what happened, or a message sent (with its state)."""

    at: str = ""
    what: str = ""
    detail: str = ""
    tone: str = "gray"


# api_tokens
@dataclasses.dataclass
class ApiTokenRow:
    """One token in the table (never the token itself)."""

    name: str = ""
    prefix: str = ""
    ceiling: str = ""
    created: str = ""
    expires: str = ""
    last_used: str = ""
    status: str = ""  # active, expired or revoked


# artifacts
@dataclasses.dataclass
class ArtifactRow:
    """One artifact in the browser's table."""

    id: str = ""
    name: str = ""
    content_type: str = ""
    kind: str = ""
    size: str = ""
    sha256: str = ""
    sha_short: str = ""
    created: str = ""
    run_id: str = ""
    run_name: str = ""
    run_href: str = ""
    task_key: str = ""
    attempt: int = 0


# base
@dataclasses.dataclass
class ProjectChoice:
    """A project in the switcher, with the signed-in user's role on it."""

    id: str = ""
    slug: str = ""
    name: str = ""
    org: str = ""
    role: str = ""


# bell
@dataclasses.dataclass
class BellItem:
    """One notification in the bell's dropdown."""

    id: str = ""
    title: str = ""
    body: str = ""
    severity: str = "info"
    when: str = ""
    unread: bool = False
    href: str = ""


# catalog
@dataclasses.dataclass
class CatalogRow:
    """One dataset in the catalog list."""

    id: str = ""
    namespace: str = ""
    name: str = ""
    kind: str = ""
    owner: str = ""
    columns: int = 0
    description: str = ""


@dataclasses.dataclass
class ColumnRow:
    name: str = ""
    type: str = ""
    description: str = ""


@dataclasses.dataclass
class LineRow:
    """A line of a panel list (a neighbour, a test result, a run, a schema change)."""

    title: str = ""
    detail: str = ""
    tone: str = "gray"


# dashboards
@dataclasses.dataclass
class Panel:
    """One chart as drawn: a plotly figure, a table or a number, or why it could not be drawn."""

    id: str = ""
    title: str = ""
    kind: str = "figure"
    figure: go.Figure = dataclasses.field(default_factory=go.Figure)
    columns: list[str] = dataclasses.field(default_factory=list)
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    number: str = ""
    message: str = ""
    pending: bool = False  # a warehouse dataset still computing (the page polls until it is drawn)


@dataclasses.dataclass
class Choice:
    key: str = ""
    label: str = ""


@dataclasses.dataclass
class FilterChoice:
    name: str = ""
    label: str = ""
    value: str = ALL
    options: list[str] = dataclasses.field(default_factory=list)


# executors
@dataclasses.dataclass
class ExecutorRow:
    """One executor in the registry table."""

    id: str = ""
    name: str = ""
    hostname: str = ""
    pool: str = ""
    state: str = ""
    engines: list[str] = dataclasses.field(default_factory=list)
    labels: list[str] = dataclasses.field(default_factory=list)
    running: int = 0
    capacity: int = 0
    load_percent: int = 0
    version: str = ""
    last_heartbeat: str = ""
    drain_requested: bool = False


# governance
@dataclasses.dataclass
class RuleRow:
    """One rule of the draft as the table shows it (lists joined with ", ")."""

    key: str = ""  # stable across moves: the rule's id, or a fresh one for a new rule
    id: str = ""
    name: str = ""
    position: int = 0
    project: str = ""
    environment: str = ""
    engine: str = ""
    labels: str = ""
    tags: str = ""
    pool: str = ""
    required_labels: str = ""
    allow_pool_override: bool = False
    owner: str = ""
    escalation: str = ""
    enabled: bool = True
    match: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    changed: bool = False


@dataclasses.dataclass
class VerdictRow:
    name: str = ""
    matched: bool = False
    reasons: str = ""


@dataclasses.dataclass
class RefusalRow:
    """One refusal a cap caused, with a link to its run (the task's panel on the run page)."""

    when: str = ""
    layer: str = ""
    run_href: str = ""
    run_label: str = ""
    message: str = ""


@dataclasses.dataclass
class LimitRow:
    """One limit on a task in the effective-caps panel."""

    kind: str = ""
    limit_label: str = ""
    source: str = ""
    target: str = ""
    layer: str = ""
    used_label: str = ""
    tightest: bool = False


@dataclasses.dataclass
class TaskLimitsRow:
    """A task of the spec in the effective-caps panel: where it goes and the limits on it."""

    key: str = ""
    engine: str = ""
    pool: str = ""
    rule: str = ""
    limits: list[LimitRow] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CapRow:
    """A cap with its usage, as the caps table and the simulator show it."""

    id: str = ""
    name: str = ""
    scope: str = ""
    target: str = ""
    project: str = ""
    environment: str = ""
    pool: str = ""
    engine: str = ""
    kind: str = ""
    limit: int = 0
    limit_label: str = ""
    enabled: bool = True
    layer: str = ""
    used_label: str = ""
    percent: int = 0
    has_usage: bool = False
    waiting_reason: str = ""
    refusals: str = ""
    recent: list[RefusalRow] = dataclasses.field(default_factory=list)
    tightest: bool = False


@dataclasses.dataclass
class OwnerRow:
    pool: str = ""
    project: str = ""
    environment: str = ""
    engine: str = ""
    owner: str = ""
    escalation: str = ""
    rule: str = ""


@dataclasses.dataclass
class SimForm:
    """The routing simulator's task: where it is submitted and what it carries (lists comma separated)."""

    project: str = ""
    environment: str = "prod"
    engine: str = "spark"
    labels: str = ""
    tags: str = ""


@dataclasses.dataclass
class SimResult:
    """Where the simulated task goes, why the earlier rules did not match it, and what would hold it."""

    ran: bool = False
    on_draft: bool = False  # simulated on an unapplied draft
    rule: str = ""
    pool: str = ""
    labels_required: str = ""
    verdicts: list[VerdictRow] = dataclasses.field(default_factory=list)
    executors: list[str] = dataclasses.field(default_factory=list)
    caps: list[CapRow] = dataclasses.field(default_factory=list)
    waits: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class EffectiveForm:
    """The effective-caps panel's spec (pasted, or a job template's) and where it would run."""

    project: str = ""
    environment: str = "prod"
    spec: str = ""
    template: str = ""  # the job template picked ("project/name"), if any


# job.backfills
NO_SCHEDULE = "none"  # the backfill's step is its own, not a schedule's cron (Radix selects hold no empty value)


@dataclasses.dataclass
class BackfillForm:
    """The backfill form's inputs, as typed (read when the backfill is created)."""

    start: str = ""
    end: str = ""
    step: str = "1d"
    schedule: str = NO_SCHEDULE
    concurrency: str = "2"
    order: str = "oldest_first"
    environment: str = "dev"
    params: str = "{}"


# job.rows
@dataclasses.dataclass
class JobHeader:
    """The template's identity and latest version, formatted."""

    id: str = ""
    name: str = ""
    project: str = ""
    project_id: str = ""
    description: str = ""
    owner: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    latest_version: int = 0
    archived: bool = False
    created: str = ""
    runs_href: str = ""


@dataclasses.dataclass
class VersionRow:
    """One immutable version of the template."""

    version: int = 0
    number: str = ""  # the version as text: the value of the diff's version pickers
    label: str = ""
    created: str = ""
    created_by: str = ""
    tasks: int = 0
    sha: str = ""


@dataclasses.dataclass
class ScheduleRow:
    """One schedule of the template."""

    id: str = ""
    name: str = ""
    environment: str = ""
    cron: str = ""
    timezone: str = ""
    state: str = ""  # enabled, paused or disabled
    enabled: bool = True
    paused: bool = False
    next_fire: str = ""
    policies: str = ""
    params: str = ""
    job: str = ""
    job_href: str = ""
    last_fire: str = ""


@dataclasses.dataclass
class FireRow:
    """One past fire of a schedule."""

    fire_time: str = ""
    outcome: str = ""
    reason: str = ""
    trigger: str = ""
    run_href: str = ""


@dataclasses.dataclass
class BackfillRow:
    """One backfill with its progress."""

    id: str = ""
    status: str = ""
    environment: str = ""
    span: str = ""
    step: str = ""
    order: str = ""
    concurrency: int = 1
    total: int = 0
    done: int = 0
    percent: int = 0
    summary: str = ""
    created: str = ""
    requested_by: str = ""


@dataclasses.dataclass
class DiffLine:
    """One line of a side-by-side diff: kind is equal, replace, delete or insert."""

    left_no: str = ""
    left: str = ""
    right_no: str = ""
    right: str = ""
    kind: str = "equal"


# job.schedules
@dataclasses.dataclass
class PreviewRow:
    """One upcoming fire, in the schedule's zone and in the viewer's."""

    schedule_zone: str = ""
    viewer_zone: str = ""


# jobs
@dataclasses.dataclass
class JobRow:
    """One job template in the list, ready to show."""

    id: str = ""
    name: str = ""
    description: str = ""
    owner: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    version: str = ""
    last_status: str = ""
    last_run: str = ""
    success: str = ""
    runs: int = 0
    p50: str = ""
    p95: str = ""
    next_fire: str = ""
    href: str = ""


# lineage
@dataclasses.dataclass
class NodeRow:
    """A node as the page shows it (a search match, the clicked node)."""

    id: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    subtype: str = ""
    outcome: str = ""
    updated: str = ""


@dataclasses.dataclass
class LegendRow:
    color: str = ""
    meaning: str = ""


# ml
@dataclasses.dataclass
class ExperimentRow:
    id: str = ""
    name: str = ""
    runs: str = ""
    last_run: str = ""
    last_status: str = ""


@dataclasses.dataclass
class MlflowRunRow:
    """A run of the experiment table: fixed fields and the chosen columns' cells."""

    run_id: str = ""
    name: str = ""
    status: str = ""
    started: str = ""
    cells: list[str] = dataclasses.field(default_factory=list)
    lakehouse_run_id: str = ""
    lakehouse_task_key: str = ""
    selected: bool = False


@dataclasses.dataclass
class CompareParam:
    name: str = ""
    cells: list[str] = dataclasses.field(default_factory=list)
    differs: bool = False


@dataclasses.dataclass
class KeyValue:
    key: str = ""
    value: str = ""


@dataclasses.dataclass
class ModelRow:
    name: str = ""
    aliases: str = ""
    latest: str = ""
    updated: str = ""
    description: str = ""


@dataclasses.dataclass
class ModelVersionRow:
    version: str = ""
    aliases: list[str] = dataclasses.field(default_factory=list)
    status: str = ""
    run_id: str = ""
    run_name: str = ""
    run_href: str = ""
    lakehouse_run_id: str = ""
    metrics: str = ""
    signature: str = ""
    created: str = ""


@dataclasses.dataclass
class AliasForm:
    """The alias form: which alias, the version it should point at, and the metric to check (optional)."""

    alias: str = "champion"
    version: str = ""
    gate_metric: str = ""


# policies
@dataclasses.dataclass
class PolicyRow:
    name: str = ""
    kind: str = ""
    target: str = ""
    who: str = ""
    what: str = ""


@dataclasses.dataclass
class AuditRow:
    at: str = ""
    actor: str = ""
    what: str = ""
    refusal: bool = False


# promotions
@dataclasses.dataclass
class StageCell:
    """One environment of one job in the pipeline view."""

    environment: str = ""
    version: str = "—"
    gate: str = ""
    request_id: str = ""
    request_label: str = ""
    request_tone: str = "gray"
    ticks: str = ""


@dataclasses.dataclass
class PipelineRow:
    job: str = ""
    template_id: str = ""
    latest: str = ""
    cells: list[StageCell] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RequestRow:
    id: str = ""
    job: str = ""
    version: str = ""
    route: str = ""
    status: str = ""
    tone: str = "gray"
    checks: str = ""
    approvals: str = ""
    requested_by: str = ""
    created_at: str = ""


@dataclasses.dataclass
class EvidenceRow:
    label: str = ""
    href: str = ""


@dataclasses.dataclass
class CheckRow:
    name: str = ""
    label: str = ""
    passed: bool = False
    summary: str = ""
    evidence: list[EvidenceRow] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DecisionRow:
    decision: str = ""
    actor: str = ""
    comment: str = ""
    at: str = ""
    note: str = ""


@dataclasses.dataclass
class PromotionView:
    """One request's page: what it asks, its facts, checks and decisions, and whether the caller may decide."""

    title: str = ""
    status: str = ""
    tone: str = "gray"
    facts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    checks: list[CheckRow] = dataclasses.field(default_factory=list)
    decisions: list[DecisionRow] = dataclasses.field(default_factory=list)
    outcome: str = ""
    may_decide: bool = False
    refusal: str = ""
    job_href: str = ""


# run_detail.panel
@dataclasses.dataclass
class DatasetRow:
    """A dataset the task read or wrote, linking to the catalog when it is registered."""

    access: str = ""
    name: str = ""
    namespace: str = ""
    href: str = ""


@dataclasses.dataclass
class PanelTask:
    """The task the panel is open on: its engine and state, its spec as submitted (pretty JSON), and the run
    whose outcome it reused (a link, "" when none)."""

    engine: str = ""
    status: str = ""
    spec: str = ""
    reused_href: str = ""


# run_detail.rows
@dataclasses.dataclass
class RunFacts:
    """A run's identity, state and timing, formatted: what a row of the runs table and the run page's header
    both show."""

    id: str = ""
    name: str = ""
    status: str = ""
    environment: str = ""
    trigger: str = ""
    requested_by: str = ""
    created: str = ""
    started: str = ""
    finished: str = ""
    created_iso: str = ""
    started_iso: str = ""
    finished_iso: str = ""
    duration: str = ""
    cancel_requested: bool = False


@dataclasses.dataclass
class RunHeader(RunFacts):
    """The run page's header: the run's facts, its project, error and warnings, and the run it re-ran."""

    project: str = ""
    project_id: str = ""
    error: str = ""
    warnings: str = ""  # found at submit: no live executor offers an engine of the routed pool
    project_slug: str = ""
    retry_of: str = ""
    retry_of_href: str = ""
    tasks_summary: str = ""
    is_terminal: bool = False


@dataclasses.dataclass
class ParamRow:
    """One run parameter."""

    name: str = ""
    value: str = ""


@dataclasses.dataclass
class TaskRow:
    """One task of the run."""

    id: str = ""
    key: str = ""
    engine: str = ""
    status: str = ""
    attempts: str = ""
    executor: str = ""
    pool: str = ""
    started: str = ""
    queued: str = ""  # queued until claimed
    duration: str = ""  # the latest attempt, claimed to finished
    depends_on: str = ""
    error: str = ""
    queue_reason: str = ""  # why a pending or queued task waits (ops.queue_reasons)
    reused_from: str = ""  # a re-run reused this task's outcome from that run (short id)
    reused_href: str = ""


@dataclasses.dataclass
class AttemptRow:
    """One claim of a task by an executor."""

    task_key: str = ""
    attempt: int = 0
    executor: str = ""
    claimed: str = ""
    started: str = ""
    duration: str = ""
    outcome: str = ""
    error: str = ""


@dataclasses.dataclass
class RunArtifactRow:
    """One artifact of the run, linking to the artifact browser."""

    id: str = ""
    name: str = ""
    task_key: str = ""
    size: str = ""
    sha_short: str = ""
    content_type: str = ""
    href: str = ""


@dataclasses.dataclass
class EventRow:
    """One line of the event log."""

    id: int = 0
    time: str = ""
    level: str = ""
    task: str = ""
    type: str = ""
    message: str = ""
    detail: str = ""  # the event's data, compact, shown muted after the message
    archived: bool = False  # read back from the run's Parquet archive (event retention)


# runs
@dataclasses.dataclass
class RunRow(RunFacts):
    """One row of the runs table, ready to show."""

    short_id: str = ""
    engines: str = ""
    tasks: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    can_cancel: bool = False  # still going, no cancel asked yet
    can_rerun: bool = False  # failed or cancelled
    href: str = ""


# serving
@dataclasses.dataclass
class EndpointRow:
    name: str = ""
    health: str = ""
    replicas: str = ""
    traffic: str = ""
    revision: str = ""


@dataclasses.dataclass
class ReplicaRow:
    version: str = ""
    index: str = ""
    state: str = ""
    address: str = ""
    pid: str = ""
    attempt: str = ""
    restarts: str = ""
    run_href: str = ""
    error: str = ""


@dataclasses.dataclass
class EndpointForm:
    """What an operator typed: the create form (name, registered model, version, replicas) and the canary bar."""

    name: str = ""
    model: str = "churn-classifier"
    version: str = "1"
    replicas: str = "1"
    canary_version: str = ""
    canary_percent: str = "10"


@dataclasses.dataclass
class EndpointDetail:
    """The open endpoint's header: its id, health, traffic split, request totals and its first replica's logs."""

    id: str = ""
    health: str = ""
    traffic: str = ""
    totals: str = ""
    logs_href: str = ""


@dataclasses.dataclass
class TryAnswer:
    """The proxy's answer to "try it": its body (indented when JSON) and which replica of which model sent it."""

    body: str = ""
    meta: str = ""


# preferences
@dataclasses.dataclass
class PreferencesForm:
    """The notification preferences as the page edits them (quiet hours as HH:MM text, projects as ids)."""

    channels: list[str] = dataclasses.field(default_factory=lambda: ["email", "in_app"])
    webhook_url: str = ""
    min_severity: str = "info"
    quiet_start: str = ""
    quiet_end: str = ""
    timezone: str = "UTC"
    critical_overrides_quiet: bool = True
    digest_info: bool = False
    subscribed_jobs: list[str] = dataclasses.field(default_factory=list)
    subscribed_projects: list[str] = dataclasses.field(default_factory=list)
    muted_jobs: list[str] = dataclasses.field(default_factory=list)


# ask
@dataclasses.dataclass
class Translation:
    """A question's translation as recorded: its id, the translator that made it, and whether it refused (why)."""

    question_id: str = ""
    provider: str = ""
    refused: bool = False
    message: str = ""


# superset
@dataclasses.dataclass
class SupersetEmbed:
    """What the embed page shows: the saved dashboard's slug, its embedded id at Superset's address with the
    guest token minted for the user, and a note on the row filters that apply."""

    slug: str = ""
    embedded_uuid: str = ""
    superset_url: str = ""
    guest_token: str = ""
    rls_note: str = ""
