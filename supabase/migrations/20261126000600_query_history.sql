-- Query history: one row per statement of a SQL task attempt (Trino, DuckDB), reported by the agent
-- through POST /tasks/{task_id}/queries under the task's lease; listed by the project's viewers.
-- A row is written while its statement runs and completed once; a finished row never changes again.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.query_history (
    id uuid primary key default gen_random_uuid(),
    run_id uuid not null references ops.runs (id),
    task_id uuid not null references ops.tasks (id),
    attempt integer not null check (attempt >= 1),
    project_id uuid not null references ops.projects (id),
    statement_index integer not null check (statement_index >= 1),
    engine text not null check (engine ~ '^[a-z][a-z0-9_-]{0,40}$'),
    query_id text check (query_id is null or length(query_id) between 1 and 200),
    sql_text text not null check (length(sql_text) <= 100000),
    query_user text,
    catalog text,
    schema_name text,
    state text not null
        check (state in ('running', 'finished', 'failed', 'cancelled', 'timed_out', 'refused')),
    rows bigint check (rows is null or rows >= 0),
    bytes_read bigint check (bytes_read is null or bytes_read >= 0),
    cpu_time_ms bigint check (cpu_time_ms is null or cpu_time_ms >= 0),
    elapsed_ms bigint check (elapsed_ms is null or elapsed_ms >= 0),
    queued_ms bigint check (queued_ms is null or queued_ms >= 0),
    peak_memory_bytes bigint check (peak_memory_bytes is null or peak_memory_bytes >= 0),
    estimated_scan_bytes bigint check (estimated_scan_bytes is null or estimated_scan_bytes >= 0),
    estimated_rows bigint check (estimated_rows is null or estimated_rows >= 0),
    scan_cap_bytes bigint check (scan_cap_bytes is null or scan_cap_bytes >= 0),
    error text,
    result_artifact text,
    details jsonb not null default '{}' check (jsonb_typeof(details) = 'object'),
    started_at timestamptz not null,
    finished_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (task_id, attempt, statement_index)
);
-- Keyset pagination of the history list: newest first, overall and per project; a run's queries.
create index query_history_created on ops.query_history (created_at desc, id desc);
create index query_history_project_created on ops.query_history (project_id, created_at desc, id desc);
create index query_history_run on ops.query_history (run_id, statement_index);

-- A statement's record is completed once: later reports of a finished statement change nothing.
create function ops.guard_query_history() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if tg_op = 'DELETE' then
        raise exception using
            errcode = 'LH423',
            message = format('query history row %s cannot be deleted; history is append-only', old.id);
    end if;
    if old.state <> 'running' then
        raise exception using
            errcode = 'LH423',
            message = format('query history row %s is %s and can no longer change', old.id, old.state);
    end if;
    if new.task_id is distinct from old.task_id or new.attempt is distinct from old.attempt
       or new.statement_index is distinct from old.statement_index or new.run_id is distinct from old.run_id
       or new.project_id is distinct from old.project_id then
        raise exception using
            errcode = 'LH423',
            message = format('query history row %s: task, attempt, statement, run and project are immutable', old.id);
    end if;
    new.updated_at := now();
    return new;
end;
$$;

create trigger query_history_guard before update or delete on ops.query_history
    for each row execute function ops.guard_query_history();
create trigger query_history_no_truncate before truncate on ops.query_history
    for each statement execute function ops.refuse_change();

alter table ops.query_history enable row level security;
grant select on ops.query_history to authenticated;
grant all on ops.query_history to service_role;
create policy query_history_read on ops.query_history for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));

revoke execute on function ops.guard_query_history() from public;
