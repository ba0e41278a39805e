-- What the Control Room UI needs to stay fast with millions of runs, and the executor
-- administration it offers: trigram search and sort indexes for the runs list, an index for
-- pool load over the last hour, and SQL functions that check the caller's role themselves
-- (a viewer calling them directly gets LH403, whatever the UI shows).

-- Runs list --------------------------------------------------------------------------------------

-- pg_trgm answers `name ilike '%text%'` from an index. Supabase keeps extensions in the
-- `extensions` schema; a database where pg_trgm already lives elsewhere keeps it there.
create schema if not exists extensions;
create extension if not exists pg_trgm with schema extensions;

do $$
declare
    v_schema text;
begin
    select n.nspname into v_schema
    from pg_extension x join pg_namespace n on n.oid = x.extnamespace
    where x.extname = 'pg_trgm';
    execute format('create index runs_name_trgm on ops.runs using gin (name %I.gin_trgm_ops)', v_schema);
end $$;

-- Keyset pagination per sort order, within a project (the UI always has one selected). Runs that
-- never started sort last (newest first) and runs still going sort after finished ones (longest
-- first); the sentinels keep the keys non-null so a row comparison pages through them exactly.
create index runs_project_started on ops.runs
    (project_id, (coalesce(started_at, '-infinity'::timestamptz)) desc, id desc);
create index runs_project_duration on ops.runs
    (project_id, (coalesce(finished_at - started_at, interval '-1 microsecond')) desc, id desc);

-- Executors --------------------------------------------------------------------------------------

-- Attempts that were running at some point of the last hour: still open, or finished recently.
create index task_attempts_finished on ops.task_attempts (finished_at);

-- Executors are shared infrastructure: org admins manage them.
create function ops.is_any_org_admin() returns boolean
language sql stable security definer
set search_path = ''
as $$
    select exists (select 1 from ops.org_members om where om.user_id = auth.uid() and om.role = 'admin')
$$;

create function ops.require_executor_admin() returns void
language plpgsql stable security definer
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() and not ops.is_any_org_admin() then
        raise exception using
            errcode = 'LH403',
            message = 'permission denied: executors are managed by org admins';
    end if;
end;
$$;

-- Anyone with a membership may look at the registry (as the executors_read policy allows).
create function ops.require_member() returns void
language plpgsql stable security definer
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() and not (
        exists (select 1 from ops.project_members pm where pm.user_id = auth.uid())
        or exists (select 1 from ops.org_members om where om.user_id = auth.uid())) then
        raise exception using
            errcode = 'LH403',
            message = 'permission denied: you are not a member of any project or org';
    end if;
end;
$$;

-- The registry in one round trip: liveness from heartbeat age, and running tasks counted from
-- the leases themselves (the heartbeat's own count lags by up to one interval).
create function ops.executor_registry(p_offline_after_seconds integer)
returns table (
    id uuid, name text, pool text, labels text[], engines text[], max_concurrency integer,
    running integer, version text, hostname text, state text, drain_requested boolean,
    last_heartbeat_at timestamptz, heartbeat_age_s double precision, registered_at timestamptz,
    token_revoked_at timestamptz
)
language plpgsql stable security definer
set search_path = ''
as $$
begin
    perform ops.require_member();
    return query
    select e.id, e.name, e.pool, e.labels, e.engines, e.max_concurrency,
           (select count(*)::integer from ops.tasks t
            where t.executor_id = e.id and t.status in ('claimed', 'running')),
           e.version, e.hostname,
           case when e.token_revoked_at is not null or e.status = 'revoked' then 'revoked'
                when e.last_heartbeat_at is null then 'pending'
                when e.last_heartbeat_at < now() - make_interval(secs => p_offline_after_seconds) then 'offline'
                when e.drain_requested then 'draining'
                else 'online' end,
           e.drain_requested, e.last_heartbeat_at,
           extract(epoch from now() - e.last_heartbeat_at)::double precision,
           e.registered_at, e.token_revoked_at
    from ops.executors e
    order by e.pool, e.name;
end;
$$;

-- Drain (stop claiming; running tasks finish) or undrain an executor.
create function ops.set_executor_drain(p_executor uuid, p_drain boolean) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_exec ops.executors;
begin
    perform ops.require_executor_admin();
    update ops.executors e
    set drain_requested = p_drain,
        status = case when e.status in ('online', 'draining')
                      then case when p_drain then 'draining' else 'online' end
                      else e.status end
    where e.id = p_executor and e.token_revoked_at is null
    returning * into v_exec;
    if not found then
        raise exception using errcode = 'LH404', column = 'executor',
            message = format('executor %s does not exist or its token was revoked', p_executor);
    end if;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (coalesce(nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
            'executors', p_executor, case when p_drain then 'drain' else 'undrain' end,
            jsonb_build_object('name', v_exec.name, 'pool', v_exec.pool));
    return v_exec.status;
end;
$$;

-- Revoke an executor's token: its next request is refused and its leases expire.
create function ops.revoke_executor(p_executor uuid) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_exec ops.executors;
begin
    perform ops.require_executor_admin();
    update ops.executors e
    set token_revoked_at = coalesce(e.token_revoked_at, now()), status = 'revoked', drain_requested = true
    where e.id = p_executor
    returning * into v_exec;
    if not found then
        raise exception using errcode = 'LH404', column = 'executor',
            message = format('executor %s does not exist', p_executor);
    end if;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (coalesce(nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
            'executors', p_executor, 'revoke', jsonb_build_object('name', v_exec.name, 'pool', v_exec.pool));
    return v_exec.status;
end;
$$;

-- Peak running tasks per pool in each p_step_seconds bucket of the last p_minutes, computed from
-- the attempts themselves (claimed until finished), so no sampler has to run and sub-second tasks
-- still show. A sweep over claim (+1) and finish (-1) times gives the running level after every
-- change; a bucket's peak is the level it starts with or the highest level reached inside it.
-- Counts only: no rows of projects the caller cannot see are revealed.
create function ops.pool_running_series(p_minutes integer default 60, p_step_seconds integer default 60)
returns table (pool text, at timestamptz, running integer)
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_step interval := make_interval(secs => greatest(p_step_seconds, 5));
    v_to timestamptz := date_bin(make_interval(secs => greatest(p_step_seconds, 5)), now(), 'epoch'::timestamptz);
    v_from timestamptz;
begin
    perform ops.require_member();
    v_from := v_to - make_interval(mins => least(greatest(p_minutes, 1), 1440));
    return query
    with spans as (
        select coalesce(t.pool, 'default') as pool, a.claimed_at, a.finished_at
        from ops.task_attempts a join ops.tasks t on t.id = a.task_id
        where (a.finished_at is null or a.finished_at >= v_from) and a.claimed_at < v_to + v_step
    ), changes as (
        select s.pool, greatest(s.claimed_at, v_from) as at, 1 as delta from spans s
        union all
        select s.pool, s.finished_at, -1 from spans s where s.finished_at is not null
    ), levels as (
        -- At equal times finishes count first, so back-to-back tasks never look concurrent.
        select c.pool, c.at, c.delta,
               sum(c.delta) over (partition by c.pool order by c.at, c.delta rows unbounded preceding)::integer
                   as level
        from changes c
    ), pools as (
        select distinct s.pool from spans s
        union
        select distinct e.pool from ops.executors e where e.token_revoked_at is null
    ), buckets as (
        select g as at from generate_series(v_from, v_to, v_step) g
    )
    select pl.pool, b.at,
           greatest(
               coalesce((select l.level from levels l where l.pool = pl.pool and l.at <= b.at
                         order by l.at desc, l.delta desc limit 1), 0),
               coalesce((select max(l.level) from levels l where l.pool = pl.pool and l.at > b.at
                         and l.at < b.at + v_step), 0))
    from pools pl cross join buckets b
    order by pl.pool, b.at;
end;
$$;

revoke execute on function ops.is_any_org_admin(), ops.require_executor_admin(), ops.require_member(),
    ops.executor_registry(integer), ops.set_executor_drain(uuid, boolean), ops.revoke_executor(uuid),
    ops.pool_running_series(integer, integer) from public;
grant execute on function ops.is_any_org_admin(), ops.require_executor_admin(), ops.require_member(),
    ops.executor_registry(integer), ops.set_executor_drain(uuid, boolean), ops.revoke_executor(uuid),
    ops.pool_running_series(integer, integer) to authenticated, service_role;
