-- The ops schema: tenancy, executors, runs, tasks, attempts, events, artifacts, routing, caps,
-- audit. History is append-only (events, artifacts) and run/task specs are immutable; triggers
-- enforce both. State transitions live in the lifecycle functions of the next migration.

create schema if not exists ops;

-- Tenancy ------------------------------------------------------------------------------------

create table ops.orgs (
    id uuid primary key default gen_random_uuid(),
    slug text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name text not null,
    created_at timestamptz not null default now()
);

create table ops.projects (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    slug text not null check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name text not null,
    description text not null default '',
    created_at timestamptz not null default now(),
    unique (org_id, slug)
);

create table ops.environments (
    id uuid primary key default gen_random_uuid(),
    project_id uuid not null references ops.projects (id),
    name text not null check (name in ('dev', 'staging', 'prod')),
    created_at timestamptz not null default now(),
    unique (project_id, name)
);

-- Members are identified by auth.uid(): Supabase Auth users, or local accounts (same uuid space).
create table ops.org_members (
    org_id uuid not null references ops.orgs (id),
    user_id uuid not null,
    role text not null check (role in ('viewer', 'operator', 'admin')),
    created_at timestamptz not null default now(),
    primary key (org_id, user_id)
);

create table ops.project_members (
    project_id uuid not null references ops.projects (id),
    user_id uuid not null,
    role text not null check (role in ('viewer', 'operator', 'admin')),
    created_at timestamptz not null default now(),
    primary key (project_id, user_id)
);
create index project_members_user on ops.project_members (user_id);
create index org_members_user on ops.org_members (user_id);

-- Executors ------------------------------------------------------------------------------------

create table ops.executors (
    id uuid primary key default gen_random_uuid(),
    name text not null unique,
    pool text not null default 'default',
    labels text[] not null default '{}',
    engines text[] not null default '{}',
    max_concurrency integer not null default 1 check (max_concurrency between 1 and 10000),
    running_tasks integer not null default 0 check (running_tasks >= 0),
    version text,
    hostname text,
    status text not null default 'pending'
        check (status in ('pending', 'online', 'draining', 'offline', 'revoked')),
    drain_requested boolean not null default false,
    last_heartbeat_at timestamptz,
    token_hash text unique,
    token_revoked_at timestamptz,
    registered_at timestamptz not null default now(),
    metadata jsonb not null default '{}'
);
create index executors_pool on ops.executors (pool);

-- Runs and tasks ---------------------------------------------------------------------------------

create table ops.runs (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    environment_id uuid not null references ops.environments (id),
    name text not null,
    spec jsonb not null,
    params jsonb not null default '{}',
    tags text[] not null default '{}',
    engines text[] not null default '{}',
    task_count integer not null default 0,
    status text not null default 'queued'
        check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority integer not null default 0 check (priority between -1000 and 1000),
    trigger text not null default 'manual'
        check (trigger in ('manual', 'api', 'schedule', 'retry', 'backfill', 'promotion', 'demo')),
    requested_by uuid,
    requested_by_name text,
    idempotency_key text check (idempotency_key is null or length(idempotency_key) between 1 and 200),
    retry_of uuid references ops.runs (id),
    error text,
    cancel_requested_at timestamptz,
    cancel_requested_by text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz not null default now(),
    unique (project_id, idempotency_key)
);
-- Keyset pagination of the runs list: newest first, overall and per project/status/environment.
create index runs_created on ops.runs (created_at desc, id desc);
create index runs_project_created on ops.runs (project_id, created_at desc, id desc);
create index runs_project_status_created on ops.runs (project_id, status, created_at desc, id desc);
create index runs_environment_created on ops.runs (environment_id, created_at desc, id desc);
create index runs_active on ops.runs (status) where status in ('queued', 'running');
create index runs_engines on ops.runs using gin (engines);
create index runs_updated on ops.runs (updated_at desc);

create table ops.tasks (
    id uuid primary key default gen_random_uuid(),
    run_id uuid not null references ops.runs (id),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    environment_id uuid not null references ops.environments (id),
    key text not null check (key ~ '^[A-Za-z0-9_.-]{1,100}$'),
    engine text not null check (engine ~ '^[a-z][a-z0-9_-]{0,40}$'),
    spec jsonb not null,
    depends_on text[] not null default '{}',
    pending_deps integer not null default 0 check (pending_deps >= 0),
    status text not null default 'pending'
        check (status in ('pending', 'queued', 'claimed', 'running', 'succeeded', 'failed',
                          'cancelled', 'timed_out', 'lost', 'skipped')),
    priority integer not null default 0,
    attempt integer not null default 0 check (attempt >= 0),
    max_attempts integer not null default 3 check (max_attempts between 1 and 100),
    retry_backoff_s integer not null default 10 check (retry_backoff_s >= 0),
    timeout_s integer check (timeout_s is null or timeout_s > 0),
    labels text[] not null default '{}',
    requested_pool text,
    pool text,
    required_labels text[] not null default '{}',
    route_rule_id uuid,
    not_before timestamptz not null default now(),
    lease_token uuid,
    lease_expires_at timestamptz,
    executor_id uuid references ops.executors (id),
    cancel_requested boolean not null default false,
    result jsonb,
    error text,
    created_at timestamptz not null default now(),
    queued_at timestamptz,
    claimed_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    unique (run_id, key)
);
-- The claim scan: queued tasks of one pool, best priority first, oldest first.
create index tasks_claimable on ops.tasks (pool, priority desc, queued_at) where status = 'queued';
-- Leased tasks: the reaper's scan and concurrency counting.
create index tasks_leased on ops.tasks (lease_expires_at) where status in ('claimed', 'running');
create index tasks_active_executor on ops.tasks (executor_id) where status in ('claimed', 'running');
create index tasks_run on ops.tasks (run_id);

create table ops.task_attempts (
    task_id uuid not null references ops.tasks (id),
    attempt integer not null check (attempt >= 1),
    run_id uuid not null references ops.runs (id),
    executor_id uuid references ops.executors (id),
    lease_token uuid not null unique,
    claimed_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    outcome text check (outcome in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost')),
    result jsonb,
    error text,
    primary key (task_id, attempt)
);
create index task_attempts_run on ops.task_attempts (run_id);

-- Events and artifacts (append-only) -----------------------------------------------------------

create table ops.events (
    id bigserial primary key,
    run_id uuid not null references ops.runs (id),
    task_id uuid references ops.tasks (id),
    attempt integer,
    seq integer check (seq is null or seq >= 0),
    ts timestamptz not null default now(),
    type text not null default 'log' check (type ~ '^[a-z][a-z0-9_.]{0,60}$'),
    level text not null default 'info' check (level in ('debug', 'info', 'warning', 'error')),
    message text not null default '',
    data jsonb not null default '{}',
    unique (task_id, attempt, seq)
);
create index events_run on ops.events (run_id, id);

create table ops.artifacts (
    id uuid primary key default gen_random_uuid(),
    run_id uuid not null references ops.runs (id),
    project_id uuid not null references ops.projects (id),
    task_id uuid references ops.tasks (id),
    attempt integer,
    name text not null check (length(name) between 1 and 512 and name !~ '(^/|\.\.)'),
    uri text not null,
    size_bytes bigint not null check (size_bytes >= 0),
    sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text not null default 'application/octet-stream',
    metadata jsonb not null default '{}',
    created_at timestamptz not null default now(),
    unique (task_id, attempt, name)
);
create index artifacts_run on ops.artifacts (run_id, created_at);
create index artifacts_project_created on ops.artifacts (project_id, created_at desc, id desc);

-- Routing and caps -------------------------------------------------------------------------------

create table ops.routing_rules (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null,
    position integer not null,
    match_project_id uuid references ops.projects (id),
    match_environment text check (match_environment in ('dev', 'staging', 'prod')),
    match_engine text,
    match_labels text[] not null default '{}',
    match_tags text[] not null default '{}',
    pool text not null,
    required_labels text[] not null default '{}',
    owner text,
    escalation jsonb not null default '[]' check (jsonb_typeof(escalation) = 'array'),
    enabled boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name),
    unique (org_id, position)
);

create table ops.caps (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null,
    scope text not null check (scope in ('org', 'project', 'environment', 'pool', 'engine')),
    project_id uuid references ops.projects (id),
    environment_id uuid references ops.environments (id),
    pool text,
    engine text,
    kind text not null check (kind in (
        'concurrent_tasks', 'max_runtime_s', 'runs_per_day', 'compute_seconds_per_day',
        'scanned_bytes_per_query', 'max_memory_mb', 'max_cores', 'max_output_bytes')),
    limit_value bigint not null check (limit_value >= 0),
    enabled boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name),
    check (
        (scope = 'org')
        or (scope = 'project' and project_id is not null)
        or (scope = 'environment' and environment_id is not null)
        or (scope = 'pool' and pool is not null)
        or (scope = 'engine' and engine is not null)
    )
);

-- Daily usage per cap, kept only for caps that exist (no cost when none is configured).
create table ops.cap_usage (
    cap_id uuid not null references ops.caps (id) on delete cascade,
    day date not null,
    runs integer not null default 0,
    compute_seconds double precision not null default 0,
    peak_concurrency integer not null default 0,
    max_runtime_s double precision not null default 0,
    scanned_bytes bigint not null default 0,
    breaches integer not null default 0,
    updated_at timestamptz not null default now(),
    primary key (cap_id, day)
);

-- Audit ------------------------------------------------------------------------------------------

create table ops.audit_log (
    id bigserial primary key,
    at timestamptz not null default now(),
    actor text not null,
    entity text not null,
    entity_id uuid not null,
    project_id uuid,
    action text not null,
    old_status text,
    new_status text,
    detail jsonb not null default '{}'
);
create index audit_log_entity on ops.audit_log (entity, entity_id, at);
create index audit_log_project_at on ops.audit_log (project_id, at desc);

-- Guards -----------------------------------------------------------------------------------------

create function ops.refuse_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception using
        errcode = 'LH423',
        message = format('%s.%s is append-only: %s is not allowed', tg_table_schema, tg_table_name, lower(tg_op)),
        hint = 'history is immutable; record a new row instead';
end;
$$;

create trigger events_append_only before update or delete on ops.events
    for each row execute function ops.refuse_change();
create trigger events_no_truncate before truncate on ops.events
    for each statement execute function ops.refuse_change();
create trigger artifacts_write_once before update or delete on ops.artifacts
    for each row execute function ops.refuse_change();
create trigger artifacts_no_truncate before truncate on ops.artifacts
    for each statement execute function ops.refuse_change();

create function ops.guard_run_immutable() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.spec is distinct from old.spec or new.params is distinct from old.params
       or new.project_id is distinct from old.project_id
       or new.environment_id is distinct from old.environment_id
       or new.created_at is distinct from old.created_at then
        raise exception using
            errcode = 'LH423',
            message = format('run %s: spec, params, project, environment and created_at are immutable', old.id),
            hint = 'submit a new run (or retry this one) instead of editing it';
    end if;
    new.updated_at := now();
    return new;
end;
$$;

create trigger runs_immutable before update on ops.runs
    for each row execute function ops.guard_run_immutable();

create function ops.guard_task_immutable() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.spec is distinct from old.spec or new.run_id is distinct from old.run_id
       or new.key is distinct from old.key or new.engine is distinct from old.engine
       or new.depends_on is distinct from old.depends_on then
        raise exception using
            errcode = 'LH423',
            message = format('task %s: spec, run, key, engine and depends_on are immutable', old.id);
    end if;
    return new;
end;
$$;

create trigger tasks_immutable before update on ops.tasks
    for each row execute function ops.guard_task_immutable();

-- Every status change lands in the audit log. The actor is the API's `lakehouse.actor` setting,
-- else the JWT subject, else the database role.
create function ops.audit_status_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_actor text := coalesce(
        nullif(current_setting('lakehouse.actor', true), ''),
        auth.uid()::text,
        session_user::text);
    v_project uuid;
begin
    if tg_table_name in ('runs', 'tasks') then
        v_project := new.project_id;
    end if;
    if tg_op = 'INSERT' then
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, new_status)
        values (v_actor, tg_table_name, new.id, v_project, 'create', new.status);
    elsif new.status is distinct from old.status then
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status)
        values (v_actor, tg_table_name, new.id, v_project, 'status', old.status, new.status);
    end if;
    return null;
end;
$$;

create trigger runs_audit after insert or update of status on ops.runs
    for each row execute function ops.audit_status_change();
-- Tasks change status in batches (a claim leases many rows in one UPDATE): one statement-level
-- insert per UPDATE instead of one trigger call per row.
create function ops.audit_task_statuses() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status)
    select coalesce(nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
           'tasks', n.id, n.project_id, 'status', o.status, n.status
    from new_rows n join old_rows o on o.id = n.id
    where n.status is distinct from o.status
    order by n.id;
    return null;
end;
$$;

create trigger tasks_audit after update on ops.tasks
    referencing old table as old_rows new table as new_rows
    for each statement execute function ops.audit_task_statuses();
create trigger executors_audit after insert or update of status on ops.executors
    for each row execute function ops.audit_status_change();
