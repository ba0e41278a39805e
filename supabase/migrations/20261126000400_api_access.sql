-- API access: local users, API tokens and sessions; executor registration and heartbeat;
-- batched lease extension and finalize for agents running many short tasks; artifact uploads.

create table ops.users (
    id uuid primary key default gen_random_uuid(),
    email text not null unique check (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    display_name text not null default '',
    password_hash text,
    is_active boolean not null default true,
    created_at timestamptz not null default now(),
    last_login_at timestamptz
);

create table ops.api_tokens (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references ops.users (id),
    name text not null check (length(name) between 1 and 100),
    token_prefix text not null,
    token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    unique (user_id, name)
);

create table ops.user_sessions (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null references ops.users (id),
    token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    user_agent text
);
create index user_sessions_user on ops.user_sessions (user_id);

create table ops.artifact_uploads (
    id uuid primary key default gen_random_uuid(),
    task_id uuid not null references ops.tasks (id),
    attempt integer not null,
    run_id uuid not null references ops.runs (id),
    project_id uuid not null references ops.projects (id),
    lease_token uuid not null,
    name text not null,
    size_bytes bigint not null check (size_bytes >= 0),
    sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text not null,
    metadata jsonb not null default '{}',
    storage_key text not null,
    status text not null default 'pending' check (status in ('pending', 'received', 'completed', 'rejected')),
    error text,
    artifact_id uuid references ops.artifacts (id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    completed_at timestamptz
);
create index artifact_uploads_task on ops.artifact_uploads (task_id, attempt, name);

alter table ops.users enable row level security;
alter table ops.api_tokens enable row level security;
alter table ops.user_sessions enable row level security;
alter table ops.artifact_uploads enable row level security;
grant select on ops.users, ops.api_tokens to authenticated;
grant all on ops.users, ops.api_tokens, ops.user_sessions, ops.artifact_uploads to service_role;
create policy users_self on ops.users for select to authenticated using (id = auth.uid());
create policy api_tokens_self on ops.api_tokens for select to authenticated using (user_id = auth.uid());

-- Executors ----------------------------------------------------------------------------------------

create function ops.register_executor(
    p_executor uuid, p_labels text[], p_engines text[], p_max_concurrency integer,
    p_version text, p_hostname text, p_metadata jsonb default '{}'
) returns ops.executors
language plpgsql security definer
set search_path = ''
as $$
declare
    v_exec ops.executors;
begin
    update ops.executors e
    set labels = coalesce(p_labels, '{}'), engines = coalesce(p_engines, '{}'),
        max_concurrency = p_max_concurrency, version = p_version, hostname = p_hostname,
        metadata = coalesce(p_metadata, '{}'), last_heartbeat_at = now(),
        status = case when e.drain_requested then 'draining' else 'online' end
    where e.id = p_executor and e.token_revoked_at is null
    returning * into v_exec;
    if not found then
        raise exception using errcode = 'LH404', message = format('executor %s is not registered or was revoked', p_executor);
    end if;
    return v_exec;
end;
$$;

-- Executor heartbeat: records liveness and capacity; answers with drain and the tasks it should
-- stop (cancel requested) or drop (no longer leased to it).
create function ops.executor_heartbeat(p_executor uuid, p_running uuid[])
returns table (drain boolean, cancel_task_ids uuid[], lost_task_ids uuid[])
language plpgsql security definer
set search_path = ''
as $$
declare
    v_drain boolean;
begin
    update ops.executors e
    set last_heartbeat_at = now(), running_tasks = coalesce(cardinality(p_running), 0),
        status = case when e.drain_requested then 'draining' else 'online' end
    where e.id = p_executor and e.token_revoked_at is null
    returning e.drain_requested into v_drain;
    if not found then
        raise exception using errcode = 'LH404', message = format('executor %s is not registered or was revoked', p_executor);
    end if;
    return query
    select v_drain,
           coalesce(array(select t.id from ops.tasks t
                          where t.id = any(p_running) and t.executor_id = p_executor
                            and t.status in ('claimed', 'running') and t.cancel_requested), '{}'),
           coalesce(array(select r from unnest(p_running) r
                          where not exists (select 1 from ops.tasks t where t.id = r and t.executor_id = p_executor
                                              and t.status in ('claimed', 'running'))), '{}');
end;
$$;

create function ops.mark_offline_executors(p_after_seconds integer) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_n integer;
begin
    update ops.executors e set status = 'offline'
    where e.status in ('online', 'draining')
      and e.last_heartbeat_at < now() - make_interval(secs => p_after_seconds);
    get diagnostics v_n = row_count;
    return v_n;
end;
$$;

-- Batches ----------------------------------------------------------------------------------------

-- Extend many leases in one round trip; a lost lease is reported per item, not raised.
create function ops.extend_leases(p_items jsonb, p_lease_seconds integer default 60)
returns table (task_id uuid, ok boolean, lease_expires_at timestamptz, cancel_requested boolean, error text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_item jsonb;
    v_row record;
begin
    for v_item in select * from jsonb_array_elements(p_items) loop
        begin
            select * into v_row from ops.extend_lease((v_item ->> 'task_id')::uuid, (v_item ->> 'lease_token')::uuid,
                                                      p_lease_seconds);
            return query select (v_item ->> 'task_id')::uuid, true, v_row.lease_expires_at, v_row.cancel_requested,
                                null::text;
        exception when sqlstate 'LH409' then
            return query select (v_item ->> 'task_id')::uuid, false, null::timestamptz, false, sqlerrm;
        end;
    end loop;
end;
$$;

-- Finalize many tasks in one round trip; each item succeeds or fails on its own. Each run's status
-- is derived once at the end rather than once per task.
create function ops.finalize_tasks(p_items jsonb)
returns table (task_id uuid, task_status text, run_status text, replayed boolean, error_code text, error text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_item jsonb;
    v_row record;
    v_task uuid;
    v_results jsonb := '[]';
    v_runs jsonb := '{}';
    v_run uuid;
begin
    for v_item in select * from jsonb_array_elements(p_items) loop
        v_task := (v_item ->> 'task_id')::uuid;
        begin
            select * into v_row from ops.finalize_task(
                v_task, (v_item ->> 'lease_token')::uuid, v_item ->> 'outcome', v_item -> 'result', v_item ->> 'error',
                false);
            select t.run_id into v_run from ops.tasks t where t.id = v_task;
            v_runs := v_runs || jsonb_build_object(v_run::text, null);
            v_results := v_results || jsonb_build_object(
                'task_id', v_task, 'task_status', v_row.task_status, 'run_id', v_run, 'replayed', v_row.replayed);
        exception when sqlstate 'LH409' or sqlstate 'LH404' or sqlstate 'LH422' then
            v_results := v_results || jsonb_build_object('task_id', v_task, 'error_code', sqlstate, 'error', sqlerrm);
        end;
    end loop;
    for v_run in select k::uuid from jsonb_object_keys(v_runs) k order by 1 loop
        v_runs := v_runs || jsonb_build_object(v_run::text, ops.refresh_run_status(v_run));
    end loop;
    return query
    select (r ->> 'task_id')::uuid, r ->> 'task_status', v_runs ->> (r ->> 'run_id'), coalesce((r ->> 'replayed')::boolean, false),
           r ->> 'error_code', r ->> 'error'
    from jsonb_array_elements(v_results) with ordinality as x(r, n)
    order by x.n;
end;
$$;

grant execute on all functions in schema ops to service_role;

-- Functions are not executable by PUBLIC: user-facing ones were granted by name in the RLS
-- migration; this keeps the new ones (and any future ones) closed by default.
revoke execute on all functions in schema ops from public;
alter default privileges in schema ops revoke execute on functions from public;

-- Hand back a lease (agent shutting down): the task is queued again at once and the handed-back
-- attempt does not count against max_attempts.
alter table ops.task_attempts drop constraint task_attempts_outcome_check;
alter table ops.task_attempts add constraint task_attempts_outcome_check
    check (outcome in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost', 'released'));

create function ops.release_task(p_task uuid, p_lease uuid, p_reason text default null)
returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_task ops.tasks;
begin
    select * into v_task from ops.tasks t where t.id = p_task for update;
    if not found or v_task.lease_token is distinct from p_lease or v_task.status not in ('claimed', 'running') then
        if exists (select 1 from ops.task_attempts a
                   where a.task_id = p_task and a.lease_token = p_lease and a.outcome = 'released') then
            return 'queued';  -- already released by this lease
        end if;
        raise exception using errcode = 'LH409',
            message = format('lease lost: task %s is no longer held by this lease', p_task);
    end if;
    update ops.task_attempts a
    set outcome = 'released', finished_at = now(), error = coalesce(p_reason, 'lease handed back by the executor')
    where a.task_id = p_task and a.lease_token = p_lease;
    if v_task.cancel_requested then
        update ops.tasks t set status = 'cancelled', lease_token = null, lease_expires_at = null, finished_at = now(),
            error = 'cancelled: lease handed back after a cancel request'
        where t.id = p_task;
        perform ops.settle_dependants(v_task.run_id, v_task.key, 'cancelled');
    else
        update ops.tasks t
        set status = 'queued', lease_token = null, lease_expires_at = null, executor_id = null,
            max_attempts = t.max_attempts + 1, not_before = now()
        where t.id = p_task;
    end if;
    perform ops.refresh_run_status(v_task.run_id);
    return case when v_task.cancel_requested then 'cancelled' else 'queued' end;
end;
$$;

revoke execute on function ops.release_task(uuid, uuid, text) from public;
grant execute on function ops.release_task(uuid, uuid, text) to service_role;
