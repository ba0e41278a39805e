-- Lineage: the datasets engines read and write (dbt sources, seeds, models, snapshots and exposures;
-- tables written by Spark/Delta or SQL engines), the edges between them, and the OpenLineage
-- RunEvents engines emitted. Engines report them through the contract (reportLineage) under a
-- task's lease; the API upserts datasets, records each edge once with the runs that saw it first
-- and last, and stores RunEvents append-only.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.datasets (
    id uuid primary key default gen_random_uuid(),
    project_id uuid not null references ops.projects (id),
    -- OpenLineage dataset naming: the namespace says where (postgres://host:5432, duckdb:///path,
    -- dbt://project for exposures), the name says what (database.schema.table).
    namespace text not null check (length(namespace) between 1 and 1000),
    name text not null check (length(name) between 1 and 1000),
    kind text not null check (kind in ('source', 'seed', 'model', 'snapshot', 'exposure', 'table')),
    -- [{"name", "type", "description"}], from the warehouse catalog where the engine had one.
    columns jsonb not null default '[]' check (jsonb_typeof(columns) = 'array'),
    owner text,
    description text not null default '',
    metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    first_run_id uuid not null references ops.runs (id),
    last_run_id uuid not null references ops.runs (id),
    last_task_id uuid not null references ops.tasks (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, namespace, name)
);
-- The datasets list: per project by name (keyset), optionally by kind.
create index datasets_project_name on ops.datasets (project_id, name, id);
create index datasets_name on ops.datasets (name, id);
create index datasets_last_run on ops.datasets (last_run_id);

create table ops.lineage_edges (
    id uuid primary key default gen_random_uuid(),
    project_id uuid not null references ops.projects (id),
    upstream_id uuid not null references ops.datasets (id),
    downstream_id uuid not null references ops.datasets (id),
    -- The transformation that carries data along the edge (a dbt node id, a Spark job name).
    job_name text not null default '' check (length(job_name) <= 1000),
    -- [{"upstream_column", "downstream_column"}] where the engine knew it.
    column_lineage jsonb not null default '[]' check (jsonb_typeof(column_lineage) = 'array'),
    first_run_id uuid not null references ops.runs (id),
    last_run_id uuid not null references ops.runs (id),
    last_task_id uuid not null references ops.tasks (id),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (upstream_id, downstream_id),
    check (upstream_id <> downstream_id)
);
create index lineage_edges_downstream on ops.lineage_edges (downstream_id);
create index lineage_edges_project on ops.lineage_edges (project_id);

create table ops.openlineage_events (
    id bigserial primary key,
    project_id uuid not null references ops.projects (id),
    run_id uuid not null references ops.runs (id),
    task_id uuid not null references ops.tasks (id),
    attempt integer not null check (attempt >= 1),
    event_type text not null check (event_type in ('START', 'RUNNING', 'COMPLETE', 'ABORT', 'FAIL', 'OTHER')),
    event_time timestamptz not null,
    job_namespace text not null,
    job_name text not null,
    -- run.runId of the event (an OpenLineage run: one dbt model's execution), not ops.runs.id.
    openlineage_run_id uuid not null,
    event jsonb not null check (jsonb_typeof(event) = 'object'),
    received_at timestamptz not null default now(),
    -- A re-sent report (agent spool, retries) must not store an event twice.
    unique (openlineage_run_id, event_type, event_time)
);
create index openlineage_events_run on ops.openlineage_events (run_id, id);

create trigger openlineage_events_append_only before update or delete on ops.openlineage_events
    for each row execute function ops.refuse_change();
create trigger openlineage_events_no_truncate before truncate on ops.openlineage_events
    for each statement execute function ops.refuse_change();

alter table ops.datasets enable row level security;
alter table ops.lineage_edges enable row level security;
alter table ops.openlineage_events enable row level security;

-- Readers of a project see its lineage; only the API (for executors) writes it.
grant select on ops.datasets, ops.lineage_edges, ops.openlineage_events to authenticated;
grant all on ops.datasets, ops.lineage_edges, ops.openlineage_events to service_role;
grant usage, select on sequence ops.openlineage_events_id_seq to service_role;

create policy datasets_read on ops.datasets for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy lineage_edges_read on ops.lineage_edges for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy openlineage_events_read on ops.openlineage_events for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
