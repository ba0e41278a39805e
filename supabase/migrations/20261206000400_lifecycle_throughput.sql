-- Lifecycle throughput (issue 25): the same guarantees (leases, fencing, exactly-once outcomes, the
-- documented lock order) for less work per task.
--  * Row triggers on ops.tasks / ops.runs that only act on some transitions get a WHEN clause, so a
--    claim or finalize no longer calls PL/pgSQL per row to find out there is nothing to do.
--  * ops.finalize_tasks is set-based: one statement per step for the whole batch, no subtransaction
--    per item, dependants and cap usage only where there are any, every run refreshed once in one
--    statement (ops.refresh_runs_status).
--  * ops.claim_tasks scans an unshared pool through the org's claim index with no OR, and looks up
--    limits per task only when a limit cap exists.

-- Triggers: fire only on the transitions they act on ----------------------------------------------

drop trigger tasks_route_update on ops.tasks;
create trigger tasks_route_update before update of status on ops.tasks
    for each row when (new.status = 'queued' and old.status is distinct from 'queued')
    execute function ops.route_on_queue();

drop trigger tasks_immutable on ops.tasks;
create trigger tasks_immutable before update on ops.tasks
    for each row when (new.spec is distinct from old.spec or new.run_id is distinct from old.run_id
                       or new.key is distinct from old.key or new.engine is distinct from old.engine
                       or new.depends_on is distinct from old.depends_on)
    execute function ops.guard_task_immutable();

drop trigger tasks_notify_alert on ops.tasks;
create trigger tasks_notify_alert after update of status on ops.tasks
    for each row when (new.status is distinct from old.status
                       and new.status in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost'))
    execute function ops.notify_alert_signal();

drop trigger runs_notify_alert on ops.runs;
create trigger runs_notify_alert after update of status on ops.runs
    for each row when (new.status is distinct from old.status
                       and new.status in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost'))
    execute function ops.notify_alert_signal();

-- Claim ---------------------------------------------------------------------------------------------

create or replace function ops.claim_tasks(
    p_executor uuid,
    p_engines text[] default null,
    p_labels text[] default null,
    p_max integer default 1,
    p_lease_seconds integer default 60,
    p_claim_id uuid default null
) returns table (
    task_id uuid, run_id uuid, task_key text, engine text, spec jsonb, params jsonb,
    attempt integer, max_attempts integer, lease_token uuid, lease_expires_at timestamptz,
    timeout_s integer, limits jsonb, project_id uuid, project_slug text, environment text
)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_exec ops.executors;
    v_shared boolean;
    v_orgs uuid[];
    v_engines text[];
    v_labels text[];
    v_max integer;
    v_ids uuid[] := '{}';
    v_runs uuid[];
    v_cand ops.tasks;
    v_cap ops.caps;
    v_count bigint;
    v_used double precision;
    v_ok boolean;
    v_counts jsonb;
    v_lease uuid;
    v_caps_locked boolean := false;
    v_limits boolean;
    v_pick uuid[];
begin
    select * into v_exec from ops.executors e where e.id = p_executor;
    if not found then
        raise exception using errcode = 'LH404', column = 'executor', message = format('executor %s is not registered', p_executor);
    end if;
    if v_exec.token_revoked_at is not null or v_exec.status = 'revoked' then
        raise exception using errcode = 'LH403', message = format('executor %s has been revoked', v_exec.name);
    end if;

    if p_claim_id is not null then
        -- A retried claim (its reply was lost) gets the tasks the first one leased, not new ones.
        perform pg_advisory_xact_lock(hashtextextended(p_executor::text || p_claim_id::text, 14));
        if exists (select 1 from ops.task_attempts a where a.executor_id = p_executor and a.claim_id = p_claim_id) then
            v_ids := array(
                select a.task_id from ops.task_attempts a
                join ops.tasks t on t.id = a.task_id and t.lease_token = a.lease_token
                where a.executor_id = p_executor and a.claim_id = p_claim_id and a.outcome is null
                  and t.status in ('claimed', 'running'));
            update ops.tasks t set lease_expires_at = greatest(t.lease_expires_at, now() + make_interval(secs => p_lease_seconds))
            where t.id = any(v_ids);
            return query
            select t.id, t.run_id, t.key, t.engine, t.spec, r.params, t.attempt, t.max_attempts, t.lease_token,
                   t.lease_expires_at,
                   case when (lim ->> 'max_runtime_s') is null then t.timeout_s
                        else least(coalesce(t.timeout_s, 2147483647), (lim ->> 'max_runtime_s')::bigint)::integer end,
                   lim, t.project_id, p.slug, e.name
            from ops.tasks t
            join ops.runs r on r.id = t.run_id
            join ops.projects p on p.id = t.project_id
            join ops.environments e on e.id = t.environment_id
            cross join lateral ops.task_limits(t) lim
            where t.id = any(v_ids)
            order by t.priority desc, t.queued_at;
            return;
        end if;
    end if;

    if v_exec.drain_requested then
        return;
    end if;
    select coalesce(bool_or(p.shared), false) into v_shared
    from ops.pools p where p.org_id = v_exec.org_id and p.name = v_exec.pool;
    v_orgs := case when v_shared then array(select o.id from ops.orgs o) else array[v_exec.org_id] end;
    v_engines := coalesce(p_engines, v_exec.engines);
    v_labels := coalesce(p_labels, v_exec.labels);
    select least(greatest(p_max, 0), 1000, v_exec.max_concurrency - count(*)) into v_max
    from ops.tasks t where t.executor_id = p_executor and t.status in ('claimed', 'running');
    if v_max <= 0 then
        return;
    end if;

    if not exists (select 1 from ops.caps c
                   where c.enabled and c.org_id = any(v_orgs)
                     and c.kind in ('concurrent_tasks', 'compute_seconds_per_day')) then
        -- Fast path: pick (skip locked), then one statement leases and records the attempts. An
        -- unshared pool (the usual case) is a plain scan of the org's claim index, with no OR for
        -- the planner to keep.
        if v_shared then
            v_pick := array(
                select t.id from ops.tasks t
                where t.status = 'queued' and t.pool = v_exec.pool and t.engine = any(v_engines)
                  and t.required_labels <@ v_labels and t.not_before <= now()
                  and (t.org_id = v_exec.org_id
                       or (t.route_rule_id is not null
                           and not exists (select 1 from ops.pools o where o.org_id = t.org_id and o.name = t.pool)))
                order by t.priority desc, t.queued_at
                limit v_max
                for update skip locked);
        else
            v_pick := array(
                select t.id from ops.tasks t
                where t.status = 'queued' and t.org_id = v_exec.org_id and t.pool = v_exec.pool
                  and t.engine = any(v_engines) and t.required_labels <@ v_labels and t.not_before <= now()
                order by t.priority desc, t.queued_at
                limit v_max
                for update skip locked);
        end if;
        if cardinality(v_pick) = 0 then
            return;
        end if;
        with leased as (
            update ops.tasks t
            set status = 'claimed', attempt = t.attempt + 1, lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                executor_id = p_executor, claimed_at = now(), started_at = null, routing_problem = null
            where t.id = any(v_pick)
            returning t.id, t.attempt, t.run_id, t.lease_token, t.claimed_at
        ), attempts as (
            insert into ops.task_attempts (task_id, attempt, run_id, executor_id, lease_token, claimed_at, claim_id)
            select l.id, l.attempt, l.run_id, p_executor, l.lease_token, l.claimed_at, p_claim_id from leased l
        )
        select coalesce(array_agg(l.id), '{}'), array_agg(distinct l.run_id) into v_ids, v_runs from leased l;
    else
        -- Caps path: candidates first (skip locked), then every cap of the orgs in id order, then
        -- usage rows (the documented lock order), so concurrent claimers count one at a time.
        for v_cand in
            select t.* from ops.tasks t
            where t.status = 'queued' and t.pool = v_exec.pool and t.engine = any(v_engines)
              and t.required_labels <@ v_labels and t.not_before <= now()
              and (t.org_id = v_exec.org_id
                   or (v_shared and t.route_rule_id is not null
                       and not exists (select 1 from ops.pools o where o.org_id = t.org_id and o.name = t.pool)))
            order by t.priority desc, t.queued_at
            limit greatest(v_max * 4, 32)
            for update skip locked
        loop
            if not v_caps_locked then
                perform ops.lock_caps(v_orgs);
                v_caps_locked := true;
            end if;
            exit when cardinality(v_ids) >= v_max;
            v_ok := true;
            v_counts := '{}';
            for v_cap in
                select c.* from ops.caps c
                where c.enabled and c.kind in ('concurrent_tasks', 'compute_seconds_per_day') and ops.cap_applies(c, v_cand)
                order by c.id
            loop
                if v_cap.kind = 'concurrent_tasks' then
                    select count(*) into v_count from ops.tasks x
                    where x.status in ('claimed', 'running') and ops.cap_applies(v_cap, x);
                    if v_count >= v_cap.limit_value then
                        v_ok := false;
                        exit;
                    end if;
                    v_counts := v_counts || jsonb_build_object(v_cap.id::text, v_count + 1);
                else
                    select u.compute_seconds into v_used from ops.cap_usage u
                    where u.cap_id = v_cap.id and u.day = ops.utc_today();
                    if coalesce(v_used, 0) >= v_cap.limit_value then
                        v_ok := false;
                        exit;
                    end if;
                end if;
            end loop;
            continue when not v_ok;
            v_lease := gen_random_uuid();
            update ops.tasks t
            set status = 'claimed', attempt = t.attempt + 1, lease_token = v_lease,
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                executor_id = p_executor, claimed_at = now(), started_at = null, routing_problem = null
            where t.id = v_cand.id;
            insert into ops.task_attempts (task_id, attempt, run_id, executor_id, lease_token, claimed_at, claim_id)
            values (v_cand.id, v_cand.attempt + 1, v_cand.run_id, p_executor, v_lease, now(), p_claim_id);
            insert into ops.cap_usage as u (cap_id, day, peak_concurrency)
            select k::uuid, ops.utc_today(), v::integer from jsonb_each_text(v_counts) as kv(k, v)
            order by k::uuid
            on conflict (cap_id, day) do update
                set peak_concurrency = greatest(u.peak_concurrency, excluded.peak_concurrency), updated_at = now();
            v_ids := v_ids || v_cand.id;
        end loop;
        v_runs := array(select distinct t.run_id from ops.tasks t where t.id = any(v_ids) order by 1);
    end if;

    if cardinality(v_ids) = 0 then
        return;
    end if;
    update ops.runs r set status = 'running', started_at = coalesce(r.started_at, now())
    where r.id = any(v_runs) and r.status = 'queued';
    -- Limits are looked up per task only when some limit cap exists for the orgs at all.
    v_limits := exists (select 1 from ops.caps c
                        where c.enabled and c.org_id = any(v_orgs)
                          and c.kind in ('max_runtime_s', 'scanned_bytes_per_query', 'max_memory_mb', 'max_cores',
                                         'max_output_bytes'));

    return query
    select t.id, t.run_id, t.key, t.engine, t.spec, r.params, t.attempt, t.max_attempts, t.lease_token,
           t.lease_expires_at,
           case when (lim ->> 'max_runtime_s') is null then t.timeout_s
                else least(coalesce(t.timeout_s, 2147483647), (lim ->> 'max_runtime_s')::bigint)::integer end,
           lim, t.project_id, p.slug, e.name
    from ops.tasks t
    join ops.runs r on r.id = t.run_id
    join ops.projects p on p.id = t.project_id
    join ops.environments e on e.id = t.environment_id
    cross join lateral (select case when v_limits then ops.task_limits(t) else '{}'::jsonb end) l(lim)
    where t.id = any(v_ids)
    order by t.priority desc, t.queued_at;
end;
$$;

-- Finalize many -------------------------------------------------------------------------------------

-- The items of a finalize batch as rows, numbered in request order.
create or replace function ops.finalize_items(p_items jsonb)
returns table (n bigint, task_id uuid, lease uuid, outcome text, result jsonb, error text)
language sql immutable
set search_path = ''
as $$
    select x.n, (x.i ->> 'task_id')::uuid, (x.i ->> 'lease_token')::uuid, x.i ->> 'outcome', x.i -> 'result',
           x.i ->> 'error'
    from jsonb_array_elements(p_items) with ordinality as x(i, n)
$$;

-- The item-by-item batch finalize (ops.finalize_tasks before this migration), kept for a batch that
-- names one task more than once: there each item must see the outcome of the one before it.
create or replace function ops.finalize_tasks_each(p_items jsonb)
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
    v_orgs uuid[];
begin
    -- Tasks in id order (step 1), then the caps of their orgs (step 2).
    perform 1 from (
        select t.id from ops.tasks t
        where t.id in (select (i ->> 'task_id')::uuid from jsonb_array_elements(p_items) i)
        order by t.id for update
    ) locked;
    v_orgs := array(select distinct t.org_id from ops.tasks t
                    where t.id in (select (i ->> 'task_id')::uuid from jsonb_array_elements(p_items) i));
    if exists (select 1 from ops.caps c where c.org_id = any(v_orgs) and c.enabled) then
        perform ops.lock_caps(v_orgs);
    end if;
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

-- Run status of many runs at once, derived from their tasks as ops.refresh_run_status does for one;
-- the runs are locked in id order first (the documented lock order), then updated in one statement.
create or replace function ops.refresh_runs_status(p_runs uuid[])
returns table (run_id uuid, run_status text)
language plpgsql security definer
set search_path = ''
as $$
begin
    perform 1 from (select r.id from ops.runs r where r.id = any(p_runs) order by r.id for no key update) locked;
    return query
    with counts as (
        select t.run_id,
               count(*) filter (where t.status in ('claimed', 'running')) as active,
               count(*) filter (where t.status in ('pending', 'queued')) as waiting,
               count(*) filter (where t.status in ('failed', 'lost', 'timed_out')) as failed,
               count(*) filter (where t.status = 'cancelled') as cancelled,
               count(*) filter (where t.attempt > 0) as started
        from ops.tasks t where t.run_id = any(p_runs)
        group by t.run_id
    ), derived as (
        select c.run_id,
               case when c.active > 0 then 'running'
                    when c.waiting > 0 then case when c.started > 0 then 'running' else 'queued' end
                    when c.failed > 0 then 'failed'
                    when c.cancelled > 0 then 'cancelled'
                    else 'succeeded' end as status
        from counts c
    ), changed as (
        update ops.runs r
        set status = d.status,
            started_at = case when d.status <> 'queued' then coalesce(r.started_at, now()) else r.started_at end,
            finished_at = case when d.status in ('succeeded', 'failed', 'cancelled') then coalesce(r.finished_at, now()) end
        from derived d
        where r.id = d.run_id and r.status is distinct from d.status
        returning r.id
    )
    select d.run_id, d.status from derived d;
end;
$$;

-- Finalize many, set-based: one statement per step for the whole batch instead of one function call
-- (and one subtransaction) per item. Same verdicts, messages and lock order as item by item: tasks in
-- id order, then the caps of their orgs, then each run once by id. A batch naming a task twice keeps
-- the item-by-item path, where each item sees the one before it.
create or replace function ops.finalize_tasks(p_items jsonb)
returns table (task_id uuid, task_status text, run_status text, replayed boolean, error_code text, error text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_orgs uuid[];
    v_caps boolean;
    v_n bigint[];
    v_task uuid[];
    v_verdict text[];
    v_message text[];
    v_runs uuid[];
    v_final record;
begin
    if jsonb_typeof(p_items) is distinct from 'array' then
        perform ops.invalid('items', 'must be an array of {task_id, lease_token, outcome}');
    end if;
    if (select count(*) <> count(distinct i ->> 'task_id') from jsonb_array_elements(p_items) i) then
        return query select * from ops.finalize_tasks_each(p_items);
        return;
    end if;
    -- Tasks in id order (step 1), then the caps of their orgs (step 2).
    perform 1 from (
        select t.id from ops.tasks t
        where t.id in (select (i ->> 'task_id')::uuid from jsonb_array_elements(p_items) i)
        order by t.id for update
    ) locked;
    v_orgs := array(select distinct t.org_id from ops.tasks t
                    where t.id in (select (i ->> 'task_id')::uuid from jsonb_array_elements(p_items) i));
    v_caps := exists (select 1 from ops.caps c where c.org_id = any(v_orgs) and c.enabled);
    if v_caps then
        perform ops.lock_caps(v_orgs);
    end if;

    -- The verdict of each item, in the order ops.finalize_task checks them.
    select array_agg(x.n order by x.n), array_agg(x.task_id order by x.n),
           array_agg(x.verdict order by x.n), array_agg(x.message order by x.n)
    into v_n, v_task, v_verdict, v_message
    from (
        select i.n, i.task_id,
               case when i.outcome is null or i.outcome not in ('succeeded', 'failed', 'cancelled', 'timed_out') then 'LH422'
                    when t.id is null then 'LH404'
                    when a.task_id is null then 'LH409'
                    when a.outcome = i.outcome then 'replay'
                    when a.outcome is not null then 'LH409'
                    when t.lease_token is distinct from i.lease or t.status not in ('claimed', 'running') then 'LH409'
                    when i.outcome = 'failed' and t.attempt < t.max_attempts and not t.cancel_requested
                         and coalesce((i.result ->> 'retryable')::boolean, true) then 'retry'
                    else 'final' end as verdict,
               case when i.outcome is null or i.outcome not in ('succeeded', 'failed', 'cancelled', 'timed_out')
                        then 'outcome: must be one of succeeded, failed, cancelled, timed_out'
                    when t.id is null then format('task %s does not exist', i.task_id)
                    when a.task_id is null then format('lease token does not belong to task %s', i.task_id)
                    when a.outcome = i.outcome then null
                    when a.outcome = 'lost' then
                        format('lease lost: attempt %s of task %s expired and was reaped; its outcome is not recorded',
                               a.attempt, i.task_id)
                    when a.outcome is not null then
                        format('task %s attempt %s already ended %s; it cannot be finalized %s',
                               i.task_id, a.attempt, a.outcome, i.outcome)
                    when t.lease_token is distinct from i.lease or t.status not in ('claimed', 'running') then
                        format('lease lost: task %s is no longer held by this lease', i.task_id)
                    end as message
        from ops.finalize_items(p_items) i
        left join ops.tasks t on t.id = i.task_id
        left join ops.task_attempts a on a.task_id = i.task_id and a.lease_token = i.lease
    ) x;

    -- Attempts end, then tasks move: retried ones back to the queue with backoff, the others to their outcome.
    update ops.task_attempts a
    set outcome = i.outcome, finished_at = now(), result = i.result, error = i.error,
        started_at = coalesce(a.started_at, a.claimed_at)
    from ops.finalize_items(p_items) i
    join unnest(v_n, v_verdict) v(n, verdict) on v.n = i.n and v.verdict in ('retry', 'final')
    where a.task_id = i.task_id and a.lease_token = i.lease;

    if 'retry' = any(v_verdict) then
        update ops.tasks t
        set status = 'queued', lease_token = null, lease_expires_at = null, executor_id = null,
            error = i.error, result = i.result,
            not_before = now() + make_interval(
                secs => least(t.retry_backoff_s * power(2, t.attempt - 1) * (1 + random() * 0.1), 86400))
        from ops.finalize_items(p_items) i
        join unnest(v_n, v_verdict) v(n, verdict) on v.n = i.n and v.verdict = 'retry'
        where t.id = i.task_id;
    end if;

    if 'final' = any(v_verdict) then
        update ops.tasks t
        set status = i.outcome, lease_token = null, lease_expires_at = null, finished_at = now(),
            started_at = coalesce(t.started_at, t.claimed_at), result = i.result, error = i.error
        from ops.finalize_items(p_items) i
        join unnest(v_n, v_verdict) v(n, verdict) on v.n = i.n and v.verdict = 'final'
        where t.id = i.task_id;
        -- Dependants and usage only where there are any: a run without depends_on has nothing to settle.
        for v_final in
            select t.* , i.outcome as final_outcome, i.n
            from ops.finalize_items(p_items) i
            join unnest(v_n, v_verdict) v(n, verdict) on v.n = i.n and v.verdict = 'final'
            join ops.tasks t on t.id = i.task_id
            where v_caps or exists (select 1 from ops.tasks d where d.run_id = t.run_id and d.depends_on <> '{}')
            order by i.n
        loop
            perform ops.settle_dependants(v_final.run_id, v_final.key, v_final.final_outcome);
            if v_caps then
                perform ops.record_task_usage(
                    (select t from ops.tasks t where t.id = v_final.id), v_final.final_outcome);
            end if;
        end loop;
    end if;

    -- Each run once, by id (step 4).
    v_runs := array(select distinct t.run_id from ops.tasks t
                    join unnest(v_task, v_verdict) v(task_id, verdict) on v.task_id = t.id
                    where v.verdict in ('replay', 'retry', 'final')
                    order by 1);
    return query
    with runs as (select * from ops.refresh_runs_status(v_runs))
    select v.task_id,
           case when v.verdict like 'LH%' then null else t.status end,
           case when v.verdict like 'LH%' then null else runs.run_status end,
           v.verdict = 'replay',
           case when v.verdict like 'LH%' then v.verdict end,
           case when v.verdict like 'LH%' then v.message end
    from unnest(v_n, v_task, v_verdict, v_message) v(n, task_id, verdict, message)
    left join ops.tasks t on t.id = v.task_id
    left join runs on runs.run_id = t.run_id
    order by v.n;
end;
$$;

revoke execute on function ops.finalize_items(jsonb), ops.finalize_tasks_each(jsonb), ops.refresh_runs_status(uuid[])
    from public;
grant execute on function ops.finalize_items(jsonb), ops.finalize_tasks_each(jsonb), ops.refresh_runs_status(uuid[])
    to service_role;
