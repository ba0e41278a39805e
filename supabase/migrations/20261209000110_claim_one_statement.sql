-- Claim and run audit, one statement where there were several (issue 25, deliver 1).
--  * ops.claim_tasks, fast path (no concurrency or compute caps): after the pick (skip locked), one
--    statement leases the tasks, records their attempts, starts their queued runs and answers from the
--    leased rows: no second read of the tasks, no separate runs statement. The caps path, the retried
--    claim (p_claim_id) and every check before the pick are unchanged.
--  * Run status changes are audited by one statement per UPDATE (transition tables, as ops.tasks has
--    been since 20261126000100) instead of a PL/pgSQL call and an INSERT per run; a new run's "create"
--    row is still written per row.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- Run audit ----------------------------------------------------------------------------------------

create function ops.audit_run_statuses() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status)
    select coalesce(nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
           'runs', n.id, n.project_id, 'status', o.status, n.status
    from new_rows n join old_rows o on o.id = n.id
    where n.status is distinct from o.status
    order by n.id;
    return null;
end;
$$;

revoke execute on function ops.audit_run_statuses() from public;

drop trigger runs_audit on ops.runs;
create trigger runs_audit after insert on ops.runs
    for each row execute function ops.audit_status_change();
create trigger runs_audit_statuses after update on ops.runs
    referencing old table as old_rows new table as new_rows
    for each statement execute function ops.audit_run_statuses();

-- Claim --------------------------------------------------------------------------------------------

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
        -- One statement leases the picked tasks, records their attempts, starts their runs that were
        -- queued (runs after tasks: the documented lock order) and answers from the leased rows.
        v_limits := exists (select 1 from ops.caps c
                            where c.enabled and c.org_id = any(v_orgs)
                              and c.kind in ('max_runtime_s', 'scanned_bytes_per_query', 'max_memory_mb', 'max_cores',
                                             'max_output_bytes'));
        return query
        with leased as (
            update ops.tasks t
            set status = 'claimed', attempt = t.attempt + 1, lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                executor_id = p_executor, claimed_at = now(), started_at = null, routing_problem = null
            where t.id = any(v_pick)
            returning t.*
        ), attempts as (
            insert into ops.task_attempts (task_id, attempt, run_id, executor_id, lease_token, claimed_at, claim_id)
            select l.id, l.attempt, l.run_id, p_executor, l.lease_token, l.claimed_at, p_claim_id from leased l
        ), started as (
            update ops.runs r set status = 'running', started_at = coalesce(r.started_at, now())
            where r.id = any(array(select distinct l.run_id from leased l)) and r.status = 'queued'
        )
        select l.id, l.run_id, l.key, l.engine, l.spec, r.params, l.attempt, l.max_attempts, l.lease_token,
               l.lease_expires_at,
               case when (lim ->> 'max_runtime_s') is null then l.timeout_s
                    else least(coalesce(l.timeout_s, 2147483647), (lim ->> 'max_runtime_s')::bigint)::integer end,
               lim, l.project_id, p.slug, e.name
        from leased l
        join ops.runs r on r.id = l.run_id
        join ops.projects p on p.id = l.project_id
        join ops.environments e on e.id = l.environment_id
        cross join lateral (select case when v_limits then ops.task_limits(row(l.*)::ops.tasks) else '{}'::jsonb end) x(lim)
        order by l.priority desc, l.queued_at;
        return;
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
                        perform ops.note_cap_hold(v_cap, v_cand, format('%s running of %s', v_count, v_cap.limit_value));
                        exit;
                    end if;
                    v_counts := v_counts || jsonb_build_object(v_cap.id::text, v_count + 1);
                else
                    select u.compute_seconds into v_used from ops.cap_usage u
                    where u.cap_id = v_cap.id and u.day = ops.utc_today();
                    if coalesce(v_used, 0) >= v_cap.limit_value then
                        v_ok := false;
                        perform ops.note_cap_hold(v_cap, v_cand,
                                                  format('%s s used today of %s', round(coalesce(v_used, 0)), v_cap.limit_value));
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

