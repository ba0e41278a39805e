"""Row models of the ``ops`` schema: SQLModel classes mirroring supabase/migrations, never creating tables.

The migrations own the schema (decision 1 of the project's design: forward-only, checksummed SQL
files). These classes describe what the migrations create, column for column (types, nullability,
primary keys, unique constraints and foreign keys); ``control_room.db.drift.schema_drift`` fails the
build when the two disagree. Services validate whole-table rows into them with
``control_room.db.rows.model_rows`` (no ORM session); Reflex states convert them into their own
display rows. Defaults, checks, indexes, triggers and RLS live only in the SQL. One class per table:
a new table's class is appended at the end, in the same style.

The classes use their own registry and ``OPS_METADATA`` instead of SQLModel's global metadata:
Reflex registers ``rx.Model`` (whose metadata *is* ``SQLModel.metadata``) for ``create_all`` and
alembic autogeneration, and our tables must never be reachable from either. Never call
``OPS_METADATA.create_all``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

SCHEMA = "ops"

# Separate from SQLModel.metadata on purpose: see the module docstring.
OPS_METADATA = MetaData()


class OpsTable(SQLModel, registry=registry(metadata=OPS_METADATA)):
    """Base of every ``ops`` read model: binds the classes to ``OPS_METADATA``, away from Reflex."""


# Column builders: one per SQL type, so each field states its SQL type and nullability in one call.


def _uuid(
    *,
    nullable: bool,
    primary_key: bool = False,
    fk: str | None = None,
    ondelete: str | None = None,
    unique: bool = False,
) -> Any:
    args: list[Any] = [ForeignKey(fk, ondelete=ondelete)] if fk else []
    return Column(Uuid(), *args, nullable=nullable, primary_key=primary_key, unique=unique)


def _text(*, nullable: bool, primary_key: bool = False, unique: bool = False) -> Any:
    return Column(Text(), nullable=nullable, primary_key=primary_key, unique=unique)


def _text_array() -> Any:
    # Every text[] column of the schema is `not null default '{}'`.
    return Column(ARRAY(Text()), nullable=False)


def _jsonb(*, nullable: bool, name: str | None = None) -> Any:
    if name:
        return Column(name, JSONB(), nullable=nullable)
    return Column(JSONB(), nullable=nullable)


def _timestamptz(*, nullable: bool) -> Any:
    return Column(DateTime(timezone=True), nullable=nullable)


def _integer(*, nullable: bool, primary_key: bool = False) -> Any:
    return Column(Integer(), nullable=nullable, primary_key=primary_key, autoincrement=False)


def _bigint(*, nullable: bool, primary_key: bool = False) -> Any:
    # bigserial primary keys are plain bigint columns with a sequence default.
    return Column(BigInteger(), nullable=nullable, primary_key=primary_key)


def _double(*, nullable: bool) -> Any:
    return Column(Double(), nullable=nullable)


def _boolean(*, nullable: bool) -> Any:
    return Column(Boolean(), nullable=nullable)


def _date(*, nullable: bool, primary_key: bool = False) -> Any:
    return Column(Date(), nullable=nullable, primary_key=primary_key)


# Bookkeeping of the migration runner ------------------------------------------------------------


class SchemaMigration(OpsTable, table=True):
    """One applied migration file (written by control_room/db/migrate.py)."""

    __tablename__ = "schema_migrations"
    __table_args__ = {"schema": SCHEMA}

    filename: str = Field(sa_column=_text(nullable=False, primary_key=True))
    sha256: str = Field(sa_column=_text(nullable=False), description="SHA-256 of the file when applied")
    applied_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    duration_ms: int = Field(sa_column=_integer(nullable=False))


# Tenancy -----------------------------------------------------------------------------------------


class Org(OpsTable, table=True):
    """An organization: owns projects, routing rules and caps."""

    __tablename__ = "orgs"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    slug: str = Field(sa_column=_text(nullable=False, unique=True))
    name: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class Project(OpsTable, table=True):
    """A project of an org; roles, runs and artifacts are scoped to it."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "slug"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    slug: str = Field(sa_column=_text(nullable=False))
    name: str = Field(sa_column=_text(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    # Refuse a submit whose engine no live executor of the routed pool offers (default: warn).
    require_available_engine: bool = Field(sa_column=_boolean(nullable=False))
    # Days after a run finished before its events and attempts move to the Parquet archive (0: never).
    event_retention_days: int = Field(sa_column=_integer(nullable=False))


class Environment(OpsTable, table=True):
    """One of a project's environments: dev, staging or prod."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    name: str = Field(sa_column=_text(nullable=False), description="dev | staging | prod")
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class OrgMember(OpsTable, table=True):
    """A user's role in an org (user ids are auth.uid() values)."""

    __tablename__ = "org_members"
    __table_args__ = {"schema": SCHEMA}

    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.orgs.id"))
    user_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    role: str = Field(sa_column=_text(nullable=False), description="viewer | operator | admin")
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class ProjectMember(OpsTable, table=True):
    """A user's role in a project (user ids are auth.uid() values)."""

    __tablename__ = "project_members"
    __table_args__ = {"schema": SCHEMA}

    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.projects.id"))
    user_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    role: str = Field(sa_column=_text(nullable=False), description="viewer | operator | admin")
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


# Executors ---------------------------------------------------------------------------------------


class Executor(OpsTable, table=True):
    """A registered executor agent, its capacity and liveness."""

    __tablename__ = "executors"
    __table_args__ = (
        ForeignKeyConstraint(["org_id", "pool"], ["ops.pools.org_id", "ops.pools.name"]),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"), description="the owning org")
    name: str = Field(sa_column=_text(nullable=False, unique=True))
    pool: str = Field(sa_column=_text(nullable=False))
    labels: list[str] = Field(sa_column=_text_array())
    engines: list[str] = Field(sa_column=_text_array())
    max_concurrency: int = Field(sa_column=_integer(nullable=False))
    running_tasks: int = Field(sa_column=_integer(nullable=False))
    version: str | None = Field(sa_column=_text(nullable=True))
    hostname: str | None = Field(sa_column=_text(nullable=True))
    status: str = Field(sa_column=_text(nullable=False), description="pending | online | draining | offline | revoked")
    drain_requested: bool = Field(sa_column=_boolean(nullable=False))
    last_heartbeat_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    token_hash: str | None = Field(
        sa_column=_text(nullable=True, unique=True), description="hash of the bearer token, never the token"
    )
    token_revoked_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    registered_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    # `metadata` is reserved by SQLAlchemy's declarative classes, hence the trailing underscore.
    metadata_: dict[str, Any] = Field(sa_column=_jsonb(nullable=False, name="metadata"))


# Runs and tasks ----------------------------------------------------------------------------------


class Run(OpsTable, table=True):
    """One execution of a job spec; its status is derived from its tasks."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("project_id", "idempotency_key"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id"))
    name: str = Field(sa_column=_text(nullable=False))
    spec: dict[str, Any] = Field(sa_column=_jsonb(nullable=False), description="immutable job spec")
    params: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    tags: list[str] = Field(sa_column=_text_array())
    engines: list[str] = Field(sa_column=_text_array())
    task_count: int = Field(sa_column=_integer(nullable=False))
    status: str = Field(
        sa_column=_text(nullable=False), description="queued | running | succeeded | failed | cancelled"
    )
    priority: int = Field(sa_column=_integer(nullable=False))
    trigger: str = Field(sa_column=_text(nullable=False))
    requested_by: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    requested_by_name: str | None = Field(sa_column=_text(nullable=True))
    idempotency_key: str | None = Field(sa_column=_text(nullable=True))
    retry_of: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    error: str | None = Field(sa_column=_text(nullable=True))
    cancel_requested_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    cancel_requested_by: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    started_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    finished_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    # Where the run comes from (20261203000300_jobs.sql); immutable like the spec.
    template_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.job_templates.id"))
    template_version_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.job_template_versions.id"))
    schedule_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True), description="no FK: schedules may be deleted")
    backfill_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.backfills.id"))
    # Why the run may wait (20261204000210_engine_availability.sql): no live executor offers an engine.
    warnings: list[str] = Field(sa_column=_text_array())


class Task(OpsTable, table=True):
    """One node of a run's DAG, with its current lease and attempt."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("run_id", "key"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id"))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id"))
    key: str = Field(sa_column=_text(nullable=False), description="unique within the run")
    engine: str = Field(sa_column=_text(nullable=False))
    spec: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    depends_on: list[str] = Field(sa_column=_text_array(), description="keys of tasks of the same run")
    pending_deps: int = Field(sa_column=_integer(nullable=False))
    status: str = Field(
        sa_column=_text(nullable=False),
        description="pending | queued | claimed | running | succeeded | failed | cancelled | timed_out"
        " | lost | skipped",
    )
    priority: int = Field(sa_column=_integer(nullable=False))
    attempt: int = Field(sa_column=_integer(nullable=False))
    max_attempts: int = Field(sa_column=_integer(nullable=False))
    retry_backoff_s: int = Field(sa_column=_integer(nullable=False))
    timeout_s: int | None = Field(sa_column=_integer(nullable=True))
    labels: list[str] = Field(sa_column=_text_array())
    requested_pool: str | None = Field(sa_column=_text(nullable=True))
    pool: str | None = Field(sa_column=_text(nullable=True), description="pool chosen by routing")
    required_labels: list[str] = Field(sa_column=_text_array())
    route_rule_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    routing_problem: str | None = Field(
        sa_column=_text(nullable=True), description='why no executor can take it, e.g. "no executor in pool X ..."'
    )
    not_before: datetime = Field(sa_column=_timestamptz(nullable=False))
    lease_token: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    lease_expires_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    executor_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.executors.id"))
    cancel_requested: bool = Field(sa_column=_boolean(nullable=False))
    result: dict[str, Any] | None = Field(sa_column=_jsonb(nullable=True))
    error: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    queued_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    claimed_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    started_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    finished_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    reused_from_task: uuid.UUID | None = Field(
        sa_column=_uuid(nullable=True, fk="ops.tasks.id"), description="a re-run reused this earlier task's outcome"
    )


class TaskAttempt(OpsTable, table=True):
    """One claim of a task by an executor, and how it ended."""

    __tablename__ = "task_attempts"
    __table_args__ = {"schema": SCHEMA}

    task_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.tasks.id"))
    attempt: int = Field(sa_column=_integer(nullable=False, primary_key=True))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id"))
    executor_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.executors.id"))
    lease_token: uuid.UUID = Field(
        sa_column=_uuid(nullable=False), description="random; looked up with its task_id (the primary key's 1st column)"
    )
    claim_id: uuid.UUID | None = Field(
        sa_column=_uuid(nullable=True), description="the agent's claim id: a retried claim gets the same leases"
    )
    claimed_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    started_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    finished_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    outcome: str | None = Field(
        sa_column=_text(nullable=True),
        description="succeeded | failed | cancelled | timed_out | lost; null while in flight",
    )
    result: dict[str, Any] | None = Field(sa_column=_jsonb(nullable=True))
    error: str | None = Field(sa_column=_text(nullable=True))


# Events and artifacts (append-only) --------------------------------------------------------------


class Event(OpsTable, table=True):
    """One append-only log line or state event of a run, deduplicated per attempt by ``seq``."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("task_id", "attempt", "seq"), {"schema": SCHEMA})

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    # No foreign keys: their per-row checks cost a third of an append; the writers guarantee the ids
    # (20261210000400_events_without_row_checks.sql).
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False))
    task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    attempt: int | None = Field(sa_column=_integer(nullable=True))
    seq: int | None = Field(sa_column=_integer(nullable=True))
    ts: datetime = Field(sa_column=_timestamptz(nullable=False))
    type: str = Field(sa_column=_text(nullable=False))
    level: str = Field(sa_column=_text(nullable=False), description="debug | info | warning | error")
    message: str = Field(sa_column=_text(nullable=False))
    data: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))


class Artifact(OpsTable, table=True):
    """Metadata of a write-once artifact; the bytes live in object storage at ``uri``."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("task_id", "attempt", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.tasks.id"))
    attempt: int | None = Field(sa_column=_integer(nullable=True))
    name: str = Field(sa_column=_text(nullable=False))
    uri: str = Field(sa_column=_text(nullable=False))
    size_bytes: int = Field(sa_column=_bigint(nullable=False))
    sha256: str = Field(sa_column=_text(nullable=False), description="lowercase hex, verified on upload")
    content_type: str = Field(sa_column=_text(nullable=False))
    # `metadata` is reserved by SQLAlchemy's declarative classes, hence the trailing underscore.
    metadata_: dict[str, Any] = Field(sa_column=_jsonb(nullable=False, name="metadata"))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


# Routing and caps --------------------------------------------------------------------------------


class RoutingRule(OpsTable, table=True):
    """An ordered rule sending matching tasks to a pool (first match by ``position`` wins)."""

    __tablename__ = "routing_rules"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        UniqueConstraint("org_id", "position"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    position: int = Field(sa_column=_integer(nullable=False))
    match_project_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.projects.id"))
    match_environment: str | None = Field(sa_column=_text(nullable=True))
    match_engine: str | None = Field(sa_column=_text(nullable=True))
    match_labels: list[str] = Field(sa_column=_text_array())
    match_tags: list[str] = Field(sa_column=_text_array())
    pool: str = Field(sa_column=_text(nullable=False))
    required_labels: list[str] = Field(sa_column=_text_array())
    owner: str | None = Field(sa_column=_text(nullable=True))
    escalation: list[Any] = Field(sa_column=_jsonb(nullable=False), description="a JSON array")
    enabled: bool = Field(sa_column=_boolean(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    allow_pool_override: bool = Field(
        sa_column=_boolean(nullable=False), description="a task's spec may name its own pool where this rule matches"
    )


class Cap(OpsTable, table=True):
    """A limit (concurrency, runtime, daily usage, ...) on an org, project, environment, pool or engine."""

    __tablename__ = "caps"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    scope: str = Field(sa_column=_text(nullable=False), description="org | project | environment | pool | engine")
    project_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.projects.id"))
    environment_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.environments.id"))
    pool: str | None = Field(sa_column=_text(nullable=True))
    engine: str | None = Field(sa_column=_text(nullable=True))
    kind: str = Field(sa_column=_text(nullable=False))
    limit_value: int = Field(sa_column=_bigint(nullable=False))
    enabled: bool = Field(sa_column=_boolean(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class CapUsage(OpsTable, table=True):
    """A cap's usage on one UTC day."""

    __tablename__ = "cap_usage"
    __table_args__ = {"schema": SCHEMA}

    cap_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.caps.id", ondelete="CASCADE"))
    day: date = Field(sa_column=_date(nullable=False, primary_key=True))
    runs: int = Field(sa_column=_integer(nullable=False))
    compute_seconds: float = Field(sa_column=_double(nullable=False))
    peak_concurrency: int = Field(sa_column=_integer(nullable=False))
    max_runtime_s: float = Field(sa_column=_double(nullable=False))
    scanned_bytes: int = Field(sa_column=_bigint(nullable=False))
    breaches: int = Field(sa_column=_integer(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


# Audit -------------------------------------------------------------------------------------------


class AuditLogEntry(OpsTable, table=True):
    """One audited action: a create or a status change of a run, task or executor."""

    __tablename__ = "audit_log"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    at: datetime = Field(sa_column=_timestamptz(nullable=False))
    actor: str = Field(sa_column=_text(nullable=False))
    entity: str = Field(sa_column=_text(nullable=False), description="the table: runs | tasks | executors")
    entity_id: uuid.UUID = Field(sa_column=_uuid(nullable=False))
    project_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    action: str = Field(sa_column=_text(nullable=False), description="create | status")
    old_status: str | None = Field(sa_column=_text(nullable=True))
    new_status: str | None = Field(sa_column=_text(nullable=True))
    detail: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))


# API access (local users, API tokens, sessions) and artifact uploads -----------------------------


class User(OpsTable, table=True):
    """A local account of the embedded default (Supabase Auth users need no row here)."""

    __tablename__ = "users"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    email: str = Field(sa_column=_text(nullable=False, unique=True))
    display_name: str = Field(sa_column=_text(nullable=False))
    password_hash: str | None = Field(sa_column=_text(nullable=True), description="null: no password sign-in")
    is_active: bool = Field(sa_column=_boolean(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    last_login_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


class ApiToken(OpsTable, table=True):
    """A user's named API token, stored hashed; ``token_prefix`` identifies it in listings."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("user_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    user_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.users.id"))
    name: str = Field(sa_column=_text(nullable=False))
    token_prefix: str = Field(sa_column=_text(nullable=False))
    token_hash: str = Field(sa_column=_text(nullable=False, unique=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    expires_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    last_used_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    revoked_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    role_ceiling: str | None = Field(
        sa_column=_text(nullable=True), description="viewer | operator | admin: requests act with at most this role"
    )


class UserSession(OpsTable, table=True):
    """A signed-in browser session of a local user, stored hashed."""

    __tablename__ = "user_sessions"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    user_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.users.id"))
    token_hash: str = Field(sa_column=_text(nullable=False, unique=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    expires_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    revoked_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    user_agent: str | None = Field(sa_column=_text(nullable=True))


class ArtifactUpload(OpsTable, table=True):
    """An artifact upload in progress under a task's lease; becomes an ``Artifact`` when completed."""

    __tablename__ = "artifact_uploads"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    task_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.tasks.id"))
    attempt: int = Field(sa_column=_integer(nullable=False))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    lease_token: uuid.UUID = Field(sa_column=_uuid(nullable=False))
    name: str = Field(sa_column=_text(nullable=False))
    size_bytes: int = Field(sa_column=_bigint(nullable=False))
    sha256: str = Field(sa_column=_text(nullable=False), description="declared SHA-256, lowercase hex")
    content_type: str = Field(sa_column=_text(nullable=False))
    # `metadata` is reserved by SQLAlchemy's declarative classes, hence the trailing underscore.
    metadata_: dict[str, Any] = Field(sa_column=_jsonb(nullable=False, name="metadata"))
    storage_key: str = Field(sa_column=_text(nullable=False))
    status: str = Field(sa_column=_text(nullable=False), description="pending | received | completed | rejected")
    error: str | None = Field(sa_column=_text(nullable=True))
    artifact_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.artifacts.id"))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    expires_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    completed_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


# GitOps configuration (20261126000700_gitops.sql): deployed from a YAML bundle ------------------


class JobTemplate(OpsTable, table=True):
    """A named, versioned job definition of a project; archived (never deleted) when removed."""

    __tablename__ = "job_templates"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    name: str = Field(sa_column=_text(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    owner: str | None = Field(sa_column=_text(nullable=True))
    tags: list[str] = Field(sa_column=_text_array())
    archived_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    run_as: str | None = Field(sa_column=_text(nullable=True), description="service principal its runs act as")


class JobTemplateVersion(OpsTable, table=True):
    """One immutable version of a job template: params JSON Schema, tasks, retries and timeout."""

    __tablename__ = "job_template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    template_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_templates.id"))
    version: int = Field(sa_column=_integer(nullable=False))
    params_schema: dict[str, Any] = Field(sa_column=_jsonb(nullable=False), description="a JSON Schema")
    tasks: list[Any] = Field(sa_column=_jsonb(nullable=False), description="a JSON array of task specs")
    max_attempts: int = Field(sa_column=_integer(nullable=False))
    retry_backoff_s: int = Field(sa_column=_integer(nullable=False))
    timeout_s: int | None = Field(sa_column=_integer(nullable=True))
    content_sha256: str = Field(sa_column=_text(nullable=False), description="SHA-256 of the canonical definition")
    created_by: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class Schedule(OpsTable, table=True):
    """Runs a job template in an environment on a cron expression in a timezone."""

    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    name: str = Field(sa_column=_text(nullable=False))
    template_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_templates.id"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id"))
    cron: str = Field(sa_column=_text(nullable=False))
    timezone: str = Field(sa_column=_text(nullable=False))
    params: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    enabled: bool = Field(sa_column=_boolean(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    # Scheduler policies and plan (20261203000300_jobs.sql).
    catchup: str = Field(sa_column=_text(nullable=False), description="none | latest | all")
    catchup_limit: int = Field(sa_column=_integer(nullable=False))
    overlap: str = Field(sa_column=_text(nullable=False), description="allow | skip | cancel_previous | queue_one")
    jitter_s: int = Field(sa_column=_integer(nullable=False))
    misfire_grace_s: int = Field(sa_column=_integer(nullable=False))
    paused_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    paused_by: str | None = Field(sa_column=_text(nullable=True))
    next_fire_at: datetime | None = Field(sa_column=_timestamptz(nullable=True), description="logical cron time")
    next_due_at: datetime | None = Field(sa_column=_timestamptz(nullable=True), description="fire time + jitter")


class AlertRule(OpsTable, table=True):
    """When to alert (run failed, too slow, queued too long, cap breached, executor offline) and whom."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    kind: str = Field(sa_column=_text(nullable=False))
    project_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.projects.id"))
    match_environment: str | None = Field(sa_column=_text(nullable=True))
    match_template_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.job_templates.id"))
    threshold: int | None = Field(sa_column=_integer(nullable=True))
    window_s: int | None = Field(sa_column=_integer(nullable=True))
    severity: str = Field(sa_column=_text(nullable=False), description="info | warning | critical")
    notify: list[str] = Field(sa_column=_text_array())
    escalate: bool = Field(sa_column=_boolean(nullable=False))
    enabled: bool = Field(sa_column=_boolean(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    # Rule kinds of issue 20 (20261203000500_alerts.sql); all optional or defaulted.
    factor: float | None = Field(sa_column=_double(nullable=True), description="run_duration: k x p95")
    baseline_runs: int = Field(sa_column=_integer(nullable=False))
    sla_time: time | None = Field(sa_column=Column(Time(), nullable=True))
    sla_timezone: str = Field(sa_column=_text(nullable=False))
    cap_percent: int | None = Field(sa_column=_integer(nullable=True))
    match_pool: str | None = Field(sa_column=_text(nullable=True))
    event_type: str | None = Field(sa_column=_text(nullable=True))
    event_level: str | None = Field(sa_column=_text(nullable=True))
    event_attributes: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    dataset_name: str | None = Field(sa_column=_text(nullable=True))
    escalate_after_s: int = Field(sa_column=_integer(nullable=False))


class PromotionGate(OpsTable, table=True):
    """What a template version must show before promotion from one environment to the next."""

    __tablename__ = "promotion_gates"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    name: str = Field(sa_column=_text(nullable=False))
    template_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.job_templates.id"))
    from_environment: str = Field(sa_column=_text(nullable=False))
    to_environment: str = Field(sa_column=_text(nullable=False))
    min_successful_runs: int = Field(sa_column=_integer(nullable=False))
    required_approvals: int = Field(sa_column=_integer(nullable=False))
    approvers: list[str] = Field(sa_column=_text_array())
    required_checks: list[str] = Field(sa_column=_text_array())
    enabled: bool = Field(sa_column=_boolean(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    window_days: int = Field(sa_column=_integer(nullable=False))
    check_tasks: list[dict[str, Any]] = Field(sa_column=_jsonb(nullable=False), description="Tasks of the check run.")
    notify: list[str] = Field(sa_column=_text_array(), description="Who else hears of its requests.")
    allow_unpromoted_runs: bool = Field(
        sa_column=_boolean(nullable=False), description="May the environment run versions other than its deployed one."
    )
    rollback_approvals: int = Field(
        sa_column=_integer(nullable=False), description="Approvals a rollback needs (0: immediate, by admins)."
    )


# Lineage (datasets, edges, OpenLineage events) -----------------------------------------------------


class Dataset(OpsTable, table=True):
    """A dataset engines read or write (dbt source/seed/model/snapshot/exposure, or a table), per project."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "namespace", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    namespace: str = Field(sa_column=_text(nullable=False), description="OpenLineage namespace, e.g. postgres://h:5432")
    name: str = Field(sa_column=_text(nullable=False), description="OpenLineage name, e.g. database.schema.table")
    kind: str = Field(sa_column=_text(nullable=False), description="source|seed|model|snapshot|exposure|table")
    columns: list[dict[str, Any]] = Field(sa_column=_jsonb(nullable=False), description="[{name, type, description}]")
    owner: str | None = Field(sa_column=_text(nullable=True))
    description: str = Field(sa_column=_text(nullable=False))
    # `metadata` is reserved by SQLAlchemy's declarative classes, hence the trailing underscore.
    metadata_: dict[str, Any] = Field(sa_column=_jsonb(nullable=False, name="metadata"))
    # Null for lineage known only from OpenLineage ingest (20261203000700_openlineage_ingest.sql).
    first_run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    last_run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    last_task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.tasks.id"))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class LineageEdge(OpsTable, table=True):
    """Data flows from ``upstream_id`` to ``downstream_id`` (through ``job_name``), seen first and last in runs."""

    __tablename__ = "lineage_edges"
    __table_args__ = (UniqueConstraint("upstream_id", "downstream_id"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    upstream_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.datasets.id"))
    downstream_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.datasets.id"))
    job_name: str = Field(sa_column=_text(nullable=False))
    column_lineage: list[dict[str, Any]] = Field(
        sa_column=_jsonb(nullable=False), description="[{upstream_column, downstream_column}]"
    )
    # Null for lineage known only from OpenLineage ingest (20261203000700_openlineage_ingest.sql).
    first_run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    last_run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    last_task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.tasks.id"))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class OpenLineageEvent(OpsTable, table=True):
    """An OpenLineage RunEvent an engine emitted (append-only; ``event`` is the event as sent)."""

    __tablename__ = "openlineage_events"
    __table_args__ = (UniqueConstraint("openlineage_run_id", "event_type", "event_time"), {"schema": SCHEMA})

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    # Null for an event ingested through POST /lineage (no task of ours sent it).
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.tasks.id"))
    attempt: int | None = Field(sa_column=_integer(nullable=True))
    event_type: str = Field(sa_column=_text(nullable=False), description="START | RUNNING | COMPLETE | ABORT | FAIL")
    event_time: datetime = Field(sa_column=_timestamptz(nullable=False))
    job_namespace: str = Field(sa_column=_text(nullable=False))
    job_name: str = Field(sa_column=_text(nullable=False))
    openlineage_run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False), description="the event's run.runId")
    event: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    received_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    ingested_by: uuid.UUID | None = Field(
        sa_column=_uuid(nullable=True, fk="ops.users.id"), description="the sender of an ingested event"
    )


class LineageJob(OpsTable, table=True):
    """A job known from OpenLineage events (an outside producer's), with the latest run state seen."""

    __tablename__ = "lineage_jobs"
    __table_args__ = (UniqueConstraint("project_id", "namespace", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    namespace: str = Field(sa_column=_text(nullable=False))
    name: str = Field(sa_column=_text(nullable=False))
    facets: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    last_openlineage_run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    last_event_type: str | None = Field(sa_column=_text(nullable=True))
    last_event_time: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class LineageJobDataset(OpsTable, table=True):
    """A dataset a lineage job reads (input) or writes (output)."""

    __tablename__ = "lineage_job_datasets"
    __table_args__ = {"schema": SCHEMA}

    job_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.lineage_jobs.id"))
    dataset_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.datasets.id"))
    direction: str = Field(sa_column=_text(nullable=False, primary_key=True), description="input | output")
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class DatasetSchemaChange(OpsTable, table=True):
    """Columns added, removed or retyped in a dataset between two reports (append-only)."""

    __tablename__ = "dataset_schema_changes"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    dataset_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.datasets.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    changes: list[dict[str, Any]] = Field(
        sa_column=_jsonb(nullable=False), description="[{column, change: added|removed|retyped, old_type, new_type}]"
    )
    detected_at: datetime = Field(sa_column=_timestamptz(nullable=False))


# Query history (20261126000600_query_history.sql) --------------------------------------------------


class QueryHistory(OpsTable, table=True):
    """One statement of a SQL task attempt (Trino, DuckDB): estimate, state and the engine's figures."""

    __tablename__ = "query_history"
    __table_args__ = (UniqueConstraint("task_id", "attempt", "statement_index"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id"))
    task_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.tasks.id"))
    attempt: int = Field(sa_column=_integer(nullable=False))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    statement_index: int = Field(sa_column=_integer(nullable=False), description="1-based position in the script")
    engine: str = Field(sa_column=_text(nullable=False))
    query_id: str | None = Field(sa_column=_text(nullable=True), description="the engine's query id")
    sql_text: str = Field(sa_column=_text(nullable=False))
    query_user: str | None = Field(sa_column=_text(nullable=True))
    catalog: str | None = Field(sa_column=_text(nullable=True))
    schema_name: str | None = Field(sa_column=_text(nullable=True))
    state: str = Field(
        sa_column=_text(nullable=False), description="running | finished | failed | cancelled | timed_out | refused"
    )
    rows: int | None = Field(sa_column=_bigint(nullable=True))
    bytes_read: int | None = Field(sa_column=_bigint(nullable=True))
    cpu_time_ms: int | None = Field(sa_column=_bigint(nullable=True))
    elapsed_ms: int | None = Field(sa_column=_bigint(nullable=True))
    queued_ms: int | None = Field(sa_column=_bigint(nullable=True))
    peak_memory_bytes: int | None = Field(sa_column=_bigint(nullable=True))
    estimated_scan_bytes: int | None = Field(sa_column=_bigint(nullable=True))
    estimated_rows: int | None = Field(sa_column=_bigint(nullable=True))
    scan_cap_bytes: int | None = Field(sa_column=_bigint(nullable=True))
    error: str | None = Field(sa_column=_text(nullable=True))
    result_artifact: str | None = Field(sa_column=_text(nullable=True))
    details: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    started_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    finished_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


# Tenancy hardening (20261203000100_tenancy) -------------------------------------------------------


class Pool(OpsTable, table=True):
    """A pool of executors, owned by one org; ``shared`` (off by default) lets it serve other orgs."""

    __tablename__ = "pools"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    shared: bool = Field(sa_column=_boolean(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class SignInFailure(OpsTable, table=True):
    """A failed sign-in, counted per account and per client address for throttling."""

    __tablename__ = "sign_in_failures"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    at: datetime = Field(sa_column=_timestamptz(nullable=False))
    email: str = Field(sa_column=_text(nullable=False))
    client: str = Field(sa_column=_text(nullable=False))


# Job management (20261203000300_jobs.sql) -----------------------------------------------------------


class ScheduleFire(OpsTable, table=True):
    """One (schedule, fire time): fired with its run, queued, skipped, missed or failed, with the reason."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_time"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    schedule_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.schedules.id", ondelete="CASCADE"))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    fire_time: datetime = Field(sa_column=_timestamptz(nullable=False), description="logical cron time")
    due_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    status: str = Field(sa_column=_text(nullable=False), description="fired | queued | skipped | missed | failed")
    reason: str | None = Field(sa_column=_text(nullable=True))
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    params: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    template_version: int | None = Field(sa_column=_integer(nullable=True))
    trigger: str = Field(sa_column=_text(nullable=False), description="schedule | manual")
    fired_by: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class Backfill(OpsTable, table=True):
    """Runs of a template over a date range, one per interval, with a concurrency limit."""

    __tablename__ = "backfills"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    template_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_templates.id"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id"))
    schedule_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    range_start: datetime = Field(sa_column=_timestamptz(nullable=False))
    range_end: datetime = Field(sa_column=_timestamptz(nullable=False))
    step: str = Field(sa_column=_text(nullable=False), description="a duration such as 1d, or a cron expression")
    timezone: str = Field(sa_column=_text(nullable=False))
    params: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    template_version: int | None = Field(sa_column=_integer(nullable=True))
    max_concurrency: int = Field(sa_column=_integer(nullable=False))
    run_order: str = Field(sa_column=_text(nullable=False), description="oldest_first | newest_first")
    total: int = Field(sa_column=_integer(nullable=False))
    status: str = Field(sa_column=_text(nullable=False), description="running | succeeded | failed | cancelled")
    requested_by: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    requested_by_name: str | None = Field(sa_column=_text(nullable=True))
    cancelled_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    cancelled_by: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    finished_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


class BackfillInterval(OpsTable, table=True):
    """One interval of a backfill, in run order, and the run it got."""

    __tablename__ = "backfill_intervals"
    __table_args__ = (UniqueConstraint("backfill_id", "data_interval_start"), {"schema": SCHEMA})

    backfill_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.backfills.id"))
    position: int = Field(sa_column=_integer(nullable=False, primary_key=True))
    data_interval_start: datetime = Field(sa_column=_timestamptz(nullable=False))
    data_interval_end: datetime = Field(sa_column=_timestamptz(nullable=False))
    status: str = Field(sa_column=_text(nullable=False), description="pending | submitted | cancelled | failed")
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    error: str | None = Field(sa_column=_text(nullable=True))
    submitted_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


# Alerts (20261203000500_alerts) ---------------------------------------------------------------------


class AlertChannel(OpsTable, table=True):
    """A named delivery channel (Slack, webhook, e-mail); secrets are environment-variable names."""

    __tablename__ = "alert_channels"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    kind: str = Field(sa_column=_text(nullable=False), description="slack | webhook | email")
    url_env: str | None = Field(sa_column=_text(nullable=True))
    secret_env: str | None = Field(sa_column=_text(nullable=True))
    address: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class AlertIncident(OpsTable, table=True):
    """One incident per rule and subject while open, counting its firings."""

    __tablename__ = "alert_incidents"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    rule_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.alert_rules.id", ondelete="CASCADE"))
    subject: str = Field(sa_column=_text(nullable=False))
    job: str | None = Field(sa_column=_text(nullable=True))
    project_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.projects.id"))
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.tasks.id"))
    route_rule_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    severity: str = Field(sa_column=_text(nullable=False))
    state: str = Field(sa_column=_text(nullable=False), description="open | acked | resolved")
    title: str = Field(sa_column=_text(nullable=False))
    summary: str = Field(sa_column=_text(nullable=False))
    count: int = Field(sa_column=_integer(nullable=False))
    first_fired_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    last_fired_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    acked_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    acked_by: str | None = Field(sa_column=_text(nullable=True))
    snoozed_until: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    resolved_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    resolved_by: str | None = Field(sa_column=_text(nullable=True))
    escalation_level: int = Field(sa_column=_integer(nullable=False))
    next_escalation_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    detail: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class AlertIncidentEvent(OpsTable, table=True):
    """An incident's timeline: fired, refired, escalated, acked, snoozed, resolved."""

    __tablename__ = "alert_incident_events"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    incident_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.alert_incidents.id", ondelete="CASCADE"))
    kind: str = Field(sa_column=_text(nullable=False))
    rule_id: uuid.UUID = Field(sa_column=_uuid(nullable=False))
    subject: str = Field(sa_column=_text(nullable=False))
    window_key: str | None = Field(sa_column=_text(nullable=True))
    at: datetime = Field(sa_column=_timestamptz(nullable=False))
    actor: str = Field(sa_column=_text(nullable=False))
    detail: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))


class AlertDelivery(OpsTable, table=True):
    """The outbox: one message to one channel target, retried with backoff, dead after max attempts."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "channel", "target"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    incident_id: uuid.UUID | None = Field(
        sa_column=_uuid(nullable=True, fk="ops.alert_incidents.id", ondelete="CASCADE")
    )
    event_id: int | None = Field(
        sa_column=Column(BigInteger(), ForeignKey("ops.alert_incident_events.id", ondelete="CASCADE"), nullable=True)
    )
    channel: str = Field(sa_column=_text(nullable=False), description="email | slack | webhook")
    target: str = Field(sa_column=_text(nullable=False))
    user_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    payload: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    state: str = Field(sa_column=_text(nullable=False), description="pending | sent | dead")
    attempts: int = Field(sa_column=_integer(nullable=False))
    max_attempts: int = Field(sa_column=_integer(nullable=False))
    next_attempt_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    last_error: str | None = Field(sa_column=_text(nullable=True))
    held_reason: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    sent_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    promotion_notice_id: int | None = Field(
        sa_column=Column(BigInteger(), ForeignKey("ops.promotion_notices.id"), nullable=True),
        description="Set (instead of event_id) for a promotion request's message.",
    )


class Notification(OpsTable, table=True):
    """An in-app notification of one user (the bell); unread while read_at is null."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("user_id", "event_id"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    user_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.users.id", ondelete="CASCADE"))
    incident_id: uuid.UUID | None = Field(
        sa_column=_uuid(nullable=True, fk="ops.alert_incidents.id", ondelete="CASCADE")
    )
    event_id: int | None = Field(
        sa_column=Column(BigInteger(), ForeignKey("ops.alert_incident_events.id", ondelete="CASCADE"), nullable=True)
    )
    severity: str = Field(sa_column=_text(nullable=False))
    title: str = Field(sa_column=_text(nullable=False))
    body: str = Field(sa_column=_text(nullable=False))
    link: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    read_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    promotion_notice_id: int | None = Field(
        sa_column=Column(BigInteger(), ForeignKey("ops.promotion_notices.id"), nullable=True)
    )


class NotificationPreferences(OpsTable, table=True):
    """A user's own notification choices in one org (written by that user only)."""

    __tablename__ = "notification_preferences"
    __table_args__ = {"schema": SCHEMA}

    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.orgs.id"))
    user_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.users.id", ondelete="CASCADE"))
    channels: list[str] = Field(sa_column=_text_array(), description="email | in_app | webhook")
    webhook_url: str | None = Field(sa_column=_text(nullable=True))
    min_severity: str = Field(sa_column=_text(nullable=False))
    quiet_start: time | None = Field(sa_column=Column(Time(), nullable=True))
    quiet_end: time | None = Field(sa_column=Column(Time(), nullable=True))
    timezone: str = Field(sa_column=_text(nullable=False))
    critical_overrides_quiet: bool = Field(sa_column=_boolean(nullable=False))
    digest_info: bool = Field(sa_column=_boolean(nullable=False))
    subscribed_jobs: list[str] = Field(sa_column=_text_array())
    subscribed_projects: list[uuid.UUID] = Field(sa_column=Column(ARRAY(Uuid()), nullable=False))
    muted_jobs: list[str] = Field(sa_column=_text_array())
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class AlertMute(OpsTable, table=True):
    """A job muted for the whole org, until a time or until unmuted."""

    __tablename__ = "alert_mutes"
    __table_args__ = {"schema": SCHEMA}

    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.orgs.id"))
    job: str = Field(sa_column=_text(nullable=False, primary_key=True))
    until: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    muted_by: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


# Promotions (20261205000200_promotions) -----------------------------------------------------------


class Deployment(OpsTable, table=True):
    """Which version of a template an environment runs: append-only, the newest row per pair is in force."""

    __tablename__ = "deployments"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    template_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_templates.id"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id"))
    environment: str = Field(sa_column=_text(nullable=False))
    version: int = Field(sa_column=_integer(nullable=False))
    version_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_template_versions.id"))
    previous_version: int | None = Field(sa_column=_integer(nullable=True))
    action: str = Field(sa_column=_text(nullable=False), description="initial | promote | rollback")
    promotion_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    actor: str = Field(sa_column=_text(nullable=False))
    comment: str = Field(sa_column=_text(nullable=False))
    deployed_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class PromotionRequest(OpsTable, table=True):
    """A request to move a template version into the next environment; only its outcome moves."""

    __tablename__ = "promotion_requests"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    template_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_templates.id"))
    version: int = Field(sa_column=_integer(nullable=False))
    version_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_template_versions.id"))
    from_environment: str = Field(sa_column=_text(nullable=False))
    to_environment: str = Field(sa_column=_text(nullable=False))
    gate_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    gate: dict[str, Any] = Field(sa_column=_jsonb(nullable=False))
    requested_by: str = Field(sa_column=_text(nullable=False))
    requested_by_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    comment: str = Field(sa_column=_text(nullable=False))
    status: str = Field(sa_column=_text(nullable=False))
    checks: list[dict[str, Any]] = Field(sa_column=_jsonb(nullable=False))
    checks_passed: bool = Field(sa_column=_boolean(nullable=False))
    evidence_fingerprint: str | None = Field(sa_column=_text(nullable=True))
    evidence_epoch: int = Field(sa_column=_integer(nullable=False))
    evaluated_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    decided_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    decided_by: str | None = Field(sa_column=_text(nullable=True))
    outcome: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    check_run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id"))
    check_run_basis: str | None = Field(sa_column=_text(nullable=True), description="Evidence it was run for.")
    check_run_refusal: str | None = Field(sa_column=_text(nullable=True))
    kind: str = Field(sa_column=_text(nullable=False), description="promote, or rollback (no checks).")


class PromotionNotice(OpsTable, table=True):
    """One event of a promotion request whose messages were planned (once: unique request and event)."""

    __tablename__ = "promotion_notices"
    __table_args__ = (UniqueConstraint("request_id", "event"), {"schema": SCHEMA})

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    request_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.promotion_requests.id"))
    event: str = Field(sa_column=_text(nullable=False), description="opened | promoted | rejected | ...")
    planned: bool = Field(sa_column=_boolean(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class PromotionDecision(OpsTable, table=True):
    """An approval, rejection or cancellation of a promotion request, with its comment (append-only)."""

    __tablename__ = "promotion_decisions"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    request_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.promotion_requests.id"))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    decision: str = Field(sa_column=_text(nullable=False))
    actor: str = Field(sa_column=_text(nullable=False))
    actor_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    comment: str = Field(sa_column=_text(nullable=False))
    evidence_epoch: int = Field(sa_column=_integer(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class VersionCheckReport(OpsTable, table=True):
    """An external check's result (CI's pr-gate) for a template version; the latest per name counts."""

    __tablename__ = "version_check_reports"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    template_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.job_templates.id"))
    version: int = Field(sa_column=_integer(nullable=False))
    name: str = Field(sa_column=_text(nullable=False))
    status: str = Field(sa_column=_text(nullable=False))
    url: str | None = Field(sa_column=_text(nullable=True))
    summary: str = Field(sa_column=_text(nullable=False))
    reported_by: str = Field(sa_column=_text(nullable=False))
    reported_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class GovernanceSettings(OpsTable, table=True):
    """An org's governance switches: routing and caps edited in the UI, or only through its bundle."""

    __tablename__ = "governance_settings"
    __table_args__ = {"schema": SCHEMA}

    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.orgs.id"))
    bundle_only: bool = Field(sa_column=_boolean(nullable=False))
    bundle_location: str = Field(sa_column=_text(nullable=False), description="where the org's bundle lives")
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class BundleDeployment(OpsTable, table=True):
    """What one `lakehouse bundle deploy` made live (recorded when the content changed)."""

    __tablename__ = "bundle_deployments"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    content: dict[str, Any] = Field(sa_column=_jsonb(nullable=False), description="the bundle as JSON")
    content_sha256: str = Field(sa_column=_text(nullable=False))
    deployed_by: str = Field(sa_column=_text(nullable=False))
    deployed_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class PrincipalGroup(OpsTable, table=True):
    """An org-level group of users and service principals that access policies name."""

    __tablename__ = "principal_groups"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class PrincipalGroupMember(OpsTable, table=True):
    """One member of a group: a user (e-mail) or a service principal (name)."""

    __tablename__ = "principal_group_members"
    __table_args__ = {"schema": SCHEMA}

    group_id: uuid.UUID = Field(
        sa_column=_uuid(nullable=False, primary_key=True, fk="ops.principal_groups.id", ondelete="CASCADE")
    )
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    member_kind: str = Field(sa_column=_text(nullable=False, primary_key=True))
    member: str = Field(sa_column=_text(nullable=False, primary_key=True))
    added_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class ServicePrincipal(OpsTable, table=True):
    """A non-human principal of an org; a job template may run as one."""

    __tablename__ = "service_principals"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    description: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class AccessPolicy(OpsTable, table=True):
    """A grant, deny, row filter or column mask on a dataset, schema or tag for a principal."""

    __tablename__ = "access_policies"
    __table_args__ = (UniqueConstraint("org_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    name: str = Field(sa_column=_text(nullable=False))
    kind: str = Field(sa_column=_text(nullable=False))
    target_kind: str = Field(sa_column=_text(nullable=False))
    target: str = Field(sa_column=_text(nullable=False))
    principal_kind: str = Field(sa_column=_text(nullable=False))
    principal: str = Field(sa_column=_text(nullable=False))
    privilege: str | None = Field(sa_column=_text(nullable=True))
    row_filter: str | None = Field(sa_column=_text(nullable=True))
    mask_column: str | None = Field(sa_column=_text(nullable=True))
    mask_kind: str | None = Field(sa_column=_text(nullable=True))
    mask_expression: str | None = Field(sa_column=_text(nullable=True))
    description: str = Field(sa_column=_text(nullable=False))
    created_by: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class AccessRefusal(OpsTable, table=True):
    """A statement the agent's access guard refused for a missing privilege (recorded from its event)."""

    __tablename__ = "access_refusals"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(sa_column=_bigint(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id"))
    task_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.tasks.id"))
    attempt: int | None = Field(sa_column=_integer(nullable=True))
    # Null once the event was archived (20261208000600_event_retention.sql); the refusal itself stays.
    event_id: int | None = Field(
        sa_column=Column(BigInteger(), ForeignKey("ops.events.id", ondelete="SET NULL"), nullable=True, unique=True)
    )
    at: datetime = Field(sa_column=_timestamptz(nullable=False))
    principal_kind: str = Field(sa_column=_text(nullable=False))
    principal: str = Field(sa_column=_text(nullable=False))
    dataset: str = Field(sa_column=_text(nullable=False))
    dataset_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.datasets.id", ondelete="SET NULL"))
    privilege: str = Field(sa_column=_text(nullable=False))
    policy: str | None = Field(sa_column=_text(nullable=True), description='the deciding policy; null: "no grant"')
    reason: str = Field(sa_column=_text(nullable=False))


class Dashboard(OpsTable, table=True):
    """A project's saved dashboard (cloned from a shipped template, edited as YAML); versions hold its content."""

    __tablename__ = "dashboards"
    __table_args__ = (UniqueConstraint("project_id", "slug"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    slug: str = Field(sa_column=_text(nullable=False))
    title: str = Field(sa_column=_text(nullable=False))
    template: str | None = Field(sa_column=_text(nullable=True), description="the shipped template it was cloned from")
    latest_version: int = Field(sa_column=_integer(nullable=False))
    created_by: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    archived_at: datetime | None = Field(
        sa_column=_timestamptz(nullable=True), description="set when a bundle deploy no longer names it"
    )


class DashboardVersion(OpsTable, table=True):
    """One immutable version of a dashboard: its validated spec and the YAML it was saved from."""

    __tablename__ = "dashboard_versions"
    __table_args__ = {"schema": SCHEMA}

    dashboard_id: uuid.UUID = Field(
        sa_column=_uuid(nullable=False, primary_key=True, fk="ops.dashboards.id", ondelete="CASCADE")
    )
    version: int = Field(sa_column=_integer(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    spec: dict[str, Any] = Field(sa_column=_jsonb(nullable=False), description="the dashboard as JSON")
    source_yaml: str = Field(sa_column=_text(nullable=False))
    content_sha256: str = Field(sa_column=_text(nullable=False))
    message: str = Field(sa_column=_text(nullable=False))
    saved_by: str = Field(sa_column=_text(nullable=False))
    saved_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class Nl2sqlQuestion(OpsTable, table=True):
    """A question asked on the Ask page: the SQL proposed (or why it was refused), what ran, and feedback."""

    __tablename__ = "nl2sql_questions"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    user_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    asked_by: str = Field(sa_column=_text(nullable=False))
    question: str = Field(sa_column=_text(nullable=False))
    provider: str = Field(sa_column=_text(nullable=False))
    outcome: str = Field(sa_column=_text(nullable=False))
    generated_sql: str | None = Field(sa_column=_text(nullable=True))
    message: str = Field(sa_column=_text(nullable=False))
    final_sql: str | None = Field(sa_column=_text(nullable=True))
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id", ondelete="SET NULL"))
    feedback: str | None = Field(sa_column=_text(nullable=True))
    fixed_sql: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    feedback_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


# Model serving (20261207000400_serving_endpoints) ---------------------------------------------------


class ServingEndpoint(OpsTable, table=True):
    """A model serving endpoint: replicas per version, where they run, and its current revision (traffic split)."""

    __tablename__ = "serving_endpoints"
    __table_args__ = (UniqueConstraint("project_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id", ondelete="CASCADE"))
    name: str = Field(sa_column=_text(nullable=False))
    status: str = Field(sa_column=_text(nullable=False), description="running or stopped")
    replicas: int = Field(sa_column=_integer(nullable=False), description="replicas per served version")
    pool: str | None = Field(sa_column=_text(nullable=True))
    max_memory_mb: int | None = Field(sa_column=_integer(nullable=True))
    revision: int = Field(sa_column=_integer(nullable=False))
    created_by: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    updated_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    stopped_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


class ServingEndpointRevision(OpsTable, table=True):
    """One traffic split an endpoint had (immutable): routes [{model, version, percent}] and why."""

    __tablename__ = "serving_endpoint_revisions"
    __table_args__ = {"schema": SCHEMA}

    endpoint_id: uuid.UUID = Field(
        sa_column=_uuid(nullable=False, primary_key=True, fk="ops.serving_endpoints.id", ondelete="CASCADE")
    )
    revision: int = Field(sa_column=_integer(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    routes: list[dict[str, Any]] = Field(sa_column=_jsonb(nullable=False))
    action: str = Field(sa_column=_text(nullable=False))
    created_by: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class ServingReplica(OpsTable, table=True):
    """One replica of a served version: the run and task serving it now, and where it listens."""

    __tablename__ = "serving_replicas"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    endpoint_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.serving_endpoints.id", ondelete="CASCADE"))
    model_name: str = Field(sa_column=_text(nullable=False))
    model_version: str = Field(sa_column=_text(nullable=False))
    replica_index: int = Field(sa_column=_integer(nullable=False))
    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.runs.id", ondelete="CASCADE"))
    task_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.tasks.id", ondelete="CASCADE"))
    restarts: int = Field(sa_column=_integer(nullable=False))
    address: str | None = Field(sa_column=_text(nullable=True))
    address_attempt: int | None = Field(sa_column=_integer(nullable=True))
    pid: int | None = Field(sa_column=_integer(nullable=True))
    reported_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    retired_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


class ServingToken(OpsTable, table=True):
    """A bearer token (lhs_…) opening one endpoint's invocations; stored hashed."""

    __tablename__ = "serving_tokens"
    __table_args__ = (UniqueConstraint("endpoint_id", "name"), {"schema": SCHEMA})

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    endpoint_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.serving_endpoints.id", ondelete="CASCADE"))
    name: str = Field(sa_column=_text(nullable=False))
    token_prefix: str = Field(sa_column=_text(nullable=False))
    token_hash: str = Field(sa_column=_text(nullable=False, unique=True))
    created_by: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    last_used_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    revoked_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


class ServingRequestStat(OpsTable, table=True):
    """What the proxy counted for one endpoint, version and 10-second bucket (latency as a histogram)."""

    __tablename__ = "serving_request_stats"
    __table_args__ = {"schema": SCHEMA}

    endpoint_id: uuid.UUID = Field(
        sa_column=_uuid(nullable=False, primary_key=True, fk="ops.serving_endpoints.id", ondelete="CASCADE")
    )
    bucket_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False))
    model_version: str = Field(sa_column=_text(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id", ondelete="CASCADE"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id", ondelete="CASCADE"))
    requests: int = Field(sa_column=_bigint(nullable=False))
    errors: int = Field(sa_column=_bigint(nullable=False))
    latency_ms_sum: float = Field(sa_column=_double(nullable=False))
    latency_hist: list[int] = Field(sa_column=Column(ARRAY(BigInteger()), nullable=False))


# Event retention (20261208000600_event_retention.sql) ----------------------------------------------


class EventArchive(OpsTable, table=True):
    """Where a finished run's events and attempts went: two verified Parquet files in the artifact store."""

    __tablename__ = "event_archives"
    __table_args__ = {"schema": SCHEMA}

    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.runs.id"))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    status: str = Field(sa_column=_text(nullable=False), description="writing | deleting | done")
    claim_token: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    claimed_by: str | None = Field(sa_column=_text(nullable=True))
    lease_expires_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    retention_days: int = Field(sa_column=_integer(nullable=False))
    last_event_id: int | None = Field(sa_column=_bigint(nullable=True))
    event_count: int = Field(sa_column=_integer(nullable=False))
    attempt_count: int = Field(sa_column=_integer(nullable=False))
    events_key: str | None = Field(sa_column=_text(nullable=True))
    events_size_bytes: int | None = Field(sa_column=_bigint(nullable=True))
    events_sha256: str | None = Field(sa_column=_text(nullable=True))
    attempts_key: str | None = Field(sa_column=_text(nullable=True))
    attempts_size_bytes: int | None = Field(sa_column=_bigint(nullable=True))
    attempts_sha256: str | None = Field(sa_column=_text(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    archived_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))
    deleted_at: datetime | None = Field(sa_column=_timestamptz(nullable=True))


class CapRefusalEvent(OpsTable, table=True):
    """A refusal a cap caused: a refused submit (recorded outside the refused transaction) or a claim hold."""

    __tablename__ = "cap_refusal_events"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    cap_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.caps.id", ondelete="CASCADE"))
    cap_name: str = Field(sa_column=_text(nullable=False))
    cap_kind: str = Field(sa_column=_text(nullable=False))
    cap_scope: str = Field(sa_column=_text(nullable=False))
    limit_value: int = Field(sa_column=_bigint(nullable=False))
    layer: str = Field(sa_column=_text(nullable=False), description="submit | claim")
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    environment_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.environments.id"))
    run_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.runs.id", ondelete="CASCADE"))
    task_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.tasks.id", ondelete="CASCADE"))
    attempt: int | None = Field(sa_column=_integer(nullable=True))
    run_name: str = Field(sa_column=_text(nullable=False))
    principal_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True))
    principal: str = Field(sa_column=_text(nullable=False))
    trigger: str = Field(sa_column=_text(nullable=False))
    message: str = Field(sa_column=_text(nullable=False))
    at: datetime = Field(sa_column=_timestamptz(nullable=False))
    last_at: datetime = Field(sa_column=_timestamptz(nullable=False))
    repeats: int = Field(sa_column=_integer(nullable=False))


class PolicyPreview(OpsTable, table=True):
    """A run that previews what a principal's query returns under the access policies (acts as them)."""

    __tablename__ = "policy_previews"
    __table_args__ = {"schema": SCHEMA}

    run_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.runs.id"))
    org_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.orgs.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    dataset_id: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.datasets.id", ondelete="SET NULL"))
    principal_kind: str = Field(sa_column=_text(nullable=False), description="user | service_principal | group")
    principal: str = Field(sa_column=_text(nullable=False))
    requested_by: uuid.UUID | None = Field(sa_column=_uuid(nullable=True, fk="ops.users.id"))
    requested_by_name: str = Field(sa_column=_text(nullable=False))
    created_at: datetime = Field(sa_column=_timestamptz(nullable=False))


class TaskDataset(OpsTable, table=True):
    """A dataset a task read (input) or wrote (output), from its lineage report: results carry inputs' policies."""

    __tablename__ = "task_datasets"
    __table_args__ = {"schema": SCHEMA}

    task_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.tasks.id"))
    project_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, fk="ops.projects.id"))
    direction: str = Field(sa_column=_text(nullable=False, primary_key=True), description="input | output")
    dataset_id: uuid.UUID = Field(sa_column=_uuid(nullable=False, primary_key=True, fk="ops.datasets.id"))
    recorded_at: datetime = Field(sa_column=_timestamptz(nullable=False))
