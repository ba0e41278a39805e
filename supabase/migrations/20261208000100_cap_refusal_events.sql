-- Every refusal a cap causes is listed beside it, past ones included (issue 19, item 4: "the last refusals it
-- caused (from events)").
--
--   submit: a run refused by a runs_per_day cap creates no run, and the caller's transaction usually rolls
--           back. ops.submit_run records the refusal (ops.note_submit_refusal); a caller whose transaction is
--           about to roll back reads that row first (ops.pending_submit_refusal) and records it again, after
--           the rollback, in a short transaction of its own (ops.record_submit_refusal: checked, idempotent).
--           Repeats of the same refusal within 10 minutes (a backfill retried on every scheduler tick) bump
--           one row's count instead of adding rows.
--   claim:  the first time a claim leaves a task queued because a concurrent_tasks or compute_seconds_per_day
--           cap is full, a hold is recorded once per task, attempt and cap (insert on conflict do nothing: a
--           held task polled again writes nothing). It ends when the task is next claimed (or ends queued).
--           Tasks a full cap holds that no claim has tried yet are still listed live, as before.
--   agent:  `limits.memory_exceeded` and `limits.cores_exceeded` events (the agent stopped a process over
--           max_memory_mb or over the CPU time max_cores allows) get the cap they broke attached on insert
--           (data.cap: id, name, kind, scope, limit), as the claim handed the limit to the agent.
--
-- DESIGN decision 7: org-scoped with RLS; members read the refusals in the projects they can see; rows are
-- written only by these definer functions.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.cap_refusal_events (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    cap_id uuid not null references ops.caps (id) on delete cascade,
    cap_name text not null,
    cap_kind text not null,
    cap_scope text not null,
    limit_value bigint not null,
    layer text not null check (layer in ('submit', 'claim')),
    project_id uuid not null references ops.projects (id),
    environment_id uuid not null references ops.environments (id),
    -- a run purged (retention) takes its holds with it
    run_id uuid references ops.runs (id) on delete cascade,
    task_id uuid references ops.tasks (id) on delete cascade,
    attempt integer,  -- claim: the attempts the task had when it was held (the claim that ends it makes the next)
    run_name text not null default '' check (length(run_name) <= 500),
    principal_id uuid,
    principal text not null default '' check (length(principal) <= 500),
    trigger text not null default '' check (length(trigger) <= 100),
    message text not null check (length(message) <= 2000),
    at timestamptz not null default now(),
    last_at timestamptz not null default now(),
    repeats integer not null default 1 check (repeats >= 1),
    check ((layer = 'claim') = (task_id is not null and run_id is not null and attempt is not null))
);
create unique index cap_refusal_events_hold on ops.cap_refusal_events (task_id, attempt, cap_id)
    where task_id is not null;
create index cap_refusal_events_cap on ops.cap_refusal_events (cap_id, at desc, id);
create index cap_refusal_events_org on ops.cap_refusal_events (org_id, at desc);

alter table ops.cap_refusal_events enable row level security;
grant select on ops.cap_refusal_events to authenticated;
grant all on ops.cap_refusal_events to service_role;
create policy cap_refusal_events_read on ops.cap_refusal_events for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

-- Submit ----------------------------------------------------------------------------------------------

-- Record a refused submit (or count a repeat of the same one within 10 minutes); remembers the row's id for
-- the rest of the transaction (ops.pending_submit_refusal). Called by ops.submit_run only.
create function ops.note_submit_refusal(
    p_cap_id uuid, p_project uuid, p_env uuid, p_trigger text, p_requested_by uuid, p_requested_by_name text,
    p_run_name text, p_message text
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_cap ops.caps;
    v_id uuid;
    -- an end user is recorded as themself (as ops.record_submit_refusal does), whatever name was passed
    v_principal text := left(case when ops.caller_is_end_user() then coalesce(ops.caller_email(), '')
                                  else coalesce(p_requested_by_name, '') end, 500);
    v_principal_id uuid := case when ops.caller_is_end_user() then auth.uid() else p_requested_by end;
    v_run_name text := left(coalesce(p_run_name, ''), 500);
    v_trigger text := left(coalesce(p_trigger, ''), 100);
begin
    select * into v_cap from ops.caps c where c.id = p_cap_id;
    update ops.cap_refusal_events e
    set repeats = e.repeats + 1, last_at = now(), message = left(p_message, 2000)
    where e.id = (select x.id from ops.cap_refusal_events x
                  where x.cap_id = v_cap.id and x.layer = 'submit' and x.at > now() - interval '1 day'
                    and x.last_at > now() - interval '10 minutes'
                    and x.project_id = p_project and x.environment_id = p_env and x.trigger = v_trigger
                    and x.principal = v_principal and x.run_name = v_run_name
                  order by x.at desc limit 1)
    returning e.id into v_id;
    if v_id is null then
        insert into ops.cap_refusal_events (org_id, cap_id, cap_name, cap_kind, cap_scope, limit_value, layer,
                                            project_id, environment_id, run_name, principal_id, principal, trigger,
                                            message)
        values (v_cap.org_id, v_cap.id, v_cap.name, v_cap.kind, v_cap.scope, v_cap.limit_value, 'submit', p_project,
                p_env, v_run_name, v_principal_id, v_principal, v_trigger, left(p_message, 2000))
        returning id into v_id;
    end if;
    perform set_config('lakehouse.submit_refusal', v_id::text, true);
    return v_id;
end;
$$;

-- The refusal ops.submit_run recorded in this transaction, as a row to hand to ops.record_submit_refusal
-- once the transaction has rolled back; null when none.
create function ops.pending_submit_refusal() returns jsonb
language sql stable security definer
set search_path = ''
as $$
    select to_jsonb(e) from ops.cap_refusal_events e
    where e.id = nullif(current_setting('lakehouse.submit_refusal', true), '')::uuid
$$;

-- Record again a refusal whose transaction rolled back (the row ops.pending_submit_refusal gave). Only what
-- is true is recorded: the caller may submit in the project, and the cap is a runs_per_day cap of the
-- project's org that applies there and is full today; an end user is recorded as themself. Idempotent on the
-- row's id. Returns whether a row was recorded.
create function ops.record_submit_refusal(p_row jsonb) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
    v_project ops.projects;
    v_env uuid;
    v_cap ops.caps;
    v_id uuid;
    v_principal_id uuid;
    v_principal text;
    v_used integer;
    v_repeats integer := greatest(coalesce((p_row ->> 'repeats')::integer, 1), 1);
begin
    if p_row is null or jsonb_typeof(p_row) <> 'object' or coalesce(p_row ->> 'layer', '') <> 'submit' then
        return false;
    end if;
    select * into v_project from ops.projects p where p.id = (p_row ->> 'project_id')::uuid;
    if not found then
        return false;
    end if;
    perform ops.require_project_role(v_project.id, 'operator');
    select e.id into v_env from ops.environments e
    where e.id = (p_row ->> 'environment_id')::uuid and e.project_id = v_project.id;
    select * into v_cap from ops.caps c where c.id = (p_row ->> 'cap_id')::uuid;
    if v_env is null or v_cap.id is null or v_cap.org_id <> v_project.org_id or not v_cap.enabled
       or v_cap.kind <> 'runs_per_day'
       or not (v_cap.scope in ('org', 'engine') or (v_cap.scope = 'project' and v_cap.project_id = v_project.id)
               or (v_cap.scope = 'environment' and v_cap.environment_id = v_env))
       or coalesce((select u.runs from ops.cap_usage u where u.cap_id = v_cap.id and u.day = ops.utc_today()), 0)
          < v_cap.limit_value then
        return false;
    end if;
    v_used := coalesce((select u.runs from ops.cap_usage u where u.cap_id = v_cap.id and u.day = ops.utc_today()), 0);
    v_principal_id := case when ops.caller_is_end_user() then auth.uid() else (p_row ->> 'principal_id')::uuid end;
    v_principal := case when ops.caller_is_end_user() then coalesce(ops.caller_email(), '')
                        else left(coalesce(p_row ->> 'principal', ''), 500) end;
    insert into ops.cap_refusal_events as e (id, org_id, cap_id, cap_name, cap_kind, cap_scope, limit_value, layer,
                                             project_id, environment_id, run_name, principal_id, principal, trigger,
                                             message, at, last_at, repeats)
    values ((p_row ->> 'id')::uuid, v_cap.org_id, v_cap.id, v_cap.name, v_cap.kind, v_cap.scope, v_cap.limit_value,
            'submit', v_project.id, v_env, left(coalesce(p_row ->> 'run_name', ''), 500), v_principal_id,
            v_principal, left(coalesce(p_row ->> 'trigger', ''), 100),
            format('cap "%s" (runs_per_day = %s, %s scope) is reached: %s runs today; try tomorrow or raise the cap',
                   v_cap.name, v_cap.limit_value, v_cap.scope, v_used),
            -- a refusal of the last few minutes, not a date the caller chose
            least(now(), greatest(coalesce((p_row ->> 'at')::timestamptz, now()), now() - interval '5 minutes')),
            now(), 1)
    on conflict (id) do update
        -- the row was a repeat (ops.note_submit_refusal counted it): count it once, however often re-sent
        set repeats = greatest(e.repeats, least(v_repeats, e.repeats + 1)), last_at = excluded.last_at,
            message = excluded.message
        where e.cap_id = excluded.cap_id and e.project_id = excluded.project_id
    returning e.id into v_id;
    return v_id is not null;
end;
$$;

create or replace function ops.submit_run(
    p_project uuid,
    p_environment text,
    p_spec jsonb,
    p_params jsonb default '{}',
    p_trigger text default 'api',
    p_requested_by uuid default null,
    p_requested_by_name text default null,
    p_idempotency_key text default null,
    p_priority integer default 0,
    p_tags text[] default '{}',
    p_retry_of uuid default null,
    p_template_version uuid default null,
    p_schedule uuid default null,
    p_backfill uuid default null
) returns table (run_id uuid, created boolean, refusal text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_org uuid;
    v_env uuid;
    v_run uuid;
    v_cap record;
    v_used integer;
    v_engines text[];
    v_today date := ops.utc_today();
    v_template uuid;
    v_refusal text;
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'operator');
    select e.id into v_env from ops.environments e where e.project_id = p_project and e.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project (dev, staging or prod)', p_environment));
    end if;
    if p_params is null or jsonb_typeof(p_params) <> 'object' then
        perform ops.invalid('params', 'must be a JSON object');
    end if;
    if p_template_version is not null then
        select v.template_id into v_template
        from ops.job_template_versions v join ops.job_templates t on t.id = v.template_id
        where v.id = p_template_version and t.project_id = p_project;
        if not found then
            perform ops.invalid('template_version', format('job template version %s is not a version of a template of project %s',
                p_template_version, p_project));
        end if;
    end if;
    if p_idempotency_key is not null then
        select r.id into v_run from ops.runs r where r.project_id = p_project and r.idempotency_key = p_idempotency_key;
        if found then
            return query select v_run, false, null::text;
            return;
        end if;
    end if;
    perform ops.validate_run_spec(p_spec);
    v_engines := array(select distinct t ->> 'engine' from jsonb_array_elements(p_spec -> 'tasks') t order by 1);

    -- runs_per_day caps: lock each cap row so concurrent submits count one at a time.
    for v_cap in
        select c.* from ops.caps c
        where c.org_id = v_org and c.enabled and c.kind = 'runs_per_day'
          and (c.scope = 'org' or (c.scope = 'project' and c.project_id = p_project)
               or (c.scope = 'environment' and c.environment_id = v_env)
               or (c.scope = 'engine' and c.engine = any(v_engines)))
        order by c.id
        for update
    loop
        select u.runs into v_used from ops.cap_usage u where u.cap_id = v_cap.id and u.day = v_today;
        if coalesce(v_used, 0) >= v_cap.limit_value then
            insert into ops.cap_usage as u (cap_id, day, breaches) values (v_cap.id, v_today, 1)
            on conflict (cap_id, day) do update set breaches = u.breaches + 1, updated_at = now();
            v_refusal := format(
                'cap "%s" (runs_per_day = %s, %s scope) is reached: %s runs today; try tomorrow or raise the cap',
                v_cap.name, v_cap.limit_value, v_cap.scope, coalesce(v_used, 0));
            perform ops.note_submit_refusal(v_cap.id, p_project, v_env, p_trigger, p_requested_by, p_requested_by_name,
                                            coalesce(p_spec ->> 'name', 'run'), v_refusal);
            return query select null::uuid, false, v_refusal;
            return;
        end if;
    end loop;

    insert into ops.runs as r (org_id, project_id, environment_id, name, spec, params, tags, engines, task_count,
                               priority, trigger, requested_by, requested_by_name, idempotency_key, retry_of,
                               template_id, template_version_id, schedule_id, backfill_id)
    values (v_org, p_project, v_env, coalesce(p_spec ->> 'name', 'run'), p_spec, p_params, coalesce(p_tags, '{}'),
            v_engines, jsonb_array_length(p_spec -> 'tasks'), p_priority, p_trigger, p_requested_by,
            p_requested_by_name, p_idempotency_key, p_retry_of, v_template, p_template_version, p_schedule,
            p_backfill)
    on conflict (project_id, idempotency_key) do nothing
    returning r.id into v_run;
    if v_run is null then  -- a concurrent submit with the same idempotency key won
        select r.id into v_run from ops.runs r where r.project_id = p_project and r.idempotency_key = p_idempotency_key;
        return query select v_run, false, null::text;
        return;
    end if;

    insert into ops.tasks (run_id, org_id, project_id, environment_id, key, engine, spec, depends_on, pending_deps,
                           status, priority, max_attempts, retry_backoff_s, timeout_s, labels, requested_pool)
    select v_run, v_org, p_project, v_env, t ->> 'key', t ->> 'engine', t, d.deps, cardinality(d.deps),
           case when cardinality(d.deps) = 0 then 'queued' else 'pending' end,
           p_priority,
           coalesce((t ->> 'max_attempts')::integer, 3),
           coalesce((t ->> 'retry_backoff_s')::integer, 10),
           (t ->> 'timeout_s')::integer,
           ops.json_text_array(t -> 'labels'),
           nullif(t ->> 'pool', '')
    from jsonb_array_elements(p_spec -> 'tasks') with ordinality as x(t, n)
    cross join lateral (select array(select distinct d from unnest(ops.json_text_array(t -> 'depends_on')) d) as deps) d
    order by x.n;

    insert into ops.cap_usage as u (cap_id, day, runs)
    select c.id, v_today, 1 from ops.caps c
    where c.org_id = v_org and c.enabled
      and (c.scope = 'org' or (c.scope = 'project' and c.project_id = p_project)
           or (c.scope = 'environment' and c.environment_id = v_env)
           or (c.scope = 'engine' and c.engine = any(v_engines)))
    on conflict (cap_id, day) do update set runs = u.runs + 1, updated_at = now();

    return query select v_run, true, null::text;
end;
$$;
-- Claim -----------------------------------------------------------------------------------------------

-- Record that a claim holds the task queued because the cap is full: once per task, attempt and cap (a
-- held task polled again writes nothing: the unique index answers the conflict, no row is written).
create function ops.note_cap_hold(c ops.caps, t ops.tasks, p_usage text) returns void
language sql security definer
set search_path = ''
as $$
    insert into ops.cap_refusal_events (org_id, cap_id, cap_name, cap_kind, cap_scope, limit_value, layer,
                                        project_id, environment_id, run_id, task_id, attempt, message)
    values (t.org_id, c.id, c.name, c.kind, c.scope, c.limit_value, 'claim', t.project_id, t.environment_id,
            t.run_id, t.id, t.attempt,
            format('held in the queue: %s at its %s cap "%s" (%s)', c.scope,
                   case c.kind when 'concurrent_tasks' then 'concurrency' else 'compute' end, c.name, p_usage))
    on conflict (task_id, attempt, cap_id) where task_id is not null do nothing
$$;

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

revoke execute on function ops.note_submit_refusal(uuid, uuid, uuid, text, uuid, text, text, text),
    ops.pending_submit_refusal(), ops.record_submit_refusal(jsonb), ops.note_cap_hold(ops.caps, ops.tasks, text)
    from public;
grant execute on function ops.pending_submit_refusal(), ops.record_submit_refusal(jsonb)
    to anon, authenticated, service_role;

-- Agent -----------------------------------------------------------------------------------------------

-- A memory or cores stop names the cap it broke: the tightest enabled cap of its kind that applies to the
-- task (the limit ops.task_limits handed the agent), preferring one whose limit is the one the agent
-- reports. Written into the event's data as it is stored, so the event carries it for good.
create function ops.attach_limit_cap() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.tasks;
    c ops.caps;
    v_kind text := case new.type when 'limits.memory_exceeded' then 'max_memory_mb' else 'max_cores' end;
    v_limit text := new.data ->> 'limit';
begin
    if new.task_id is null then
        return new;
    end if;
    select * into t from ops.tasks x where x.id = new.task_id;
    select * into c from ops.caps x
    where x.org_id = t.org_id and x.enabled and x.kind = v_kind and ops.cap_applies(x, t)
    order by (x.limit_value::text is distinct from v_limit), x.limit_value, x.id
    limit 1;
    if c.id is not null then
        new.data := coalesce(new.data, '{}'::jsonb) || jsonb_build_object('cap', jsonb_build_object(
            'id', c.id, 'name', c.name, 'kind', c.kind, 'scope', c.scope, 'limit', c.limit_value));
    end if;
    return new;
end;
$$;

revoke execute on function ops.attach_limit_cap() from public;

create trigger events_limit_cap before insert on ops.events
    for each row when (new.type in ('limits.memory_exceeded', 'limits.cores_exceeded'))
    execute function ops.attach_limit_cap();

-- The refusals index covers the agent's new stop events too.
create index events_cap_refusals_agent on ops.events (id)
where type in ('sql.statement.refused', 'limits.output_exceeded', 'limits.memory_exceeded', 'limits.cores_exceeded')
   or (type = 'finish' and data ->> 'outcome' = 'timed_out');
drop index ops.events_cap_refusals;

-- The list ------------------------------------------------------------------------------------------

-- The last refusals of each cap of the org (p_per_cap each), newest first; or, with p_cap, one page of that
-- cap's refusals older than (p_before_at, p_before_key) (keyset pages: pass the last row's at and key).
-- Members of the org only; an end user sees the refusals in the projects they can see.
drop function ops.cap_refusals(uuid, integer);
create function ops.cap_refusals(
    p_org uuid, p_per_cap integer default 5, p_cap uuid default null, p_before_at timestamptz default null,
    p_before_key text default null
)
returns table (
    cap_id uuid, at timestamptz, ended_at timestamptz, layer text, run_id uuid, run_name text, task_key text,
    attempt integer, message text, principal text, project text, environment text, repeats integer, key text
)
language sql stable security definer
set search_path = ''
as $$
    with caller as (
        select case when ops.caller_is_end_user() then (select ops.viewable_projects())::uuid[] end as projects
        where not ops.caller_is_end_user() or ops.is_org_member(p_org)
    ), refused as (
        -- The predicate repeats the index's so the planner can use it.
        select e.id, e.ts, e.run_id, e.attempt, e.message, e.data, t,
               case e.type when 'sql.statement.refused' then 'scanned_bytes_per_query'
                           when 'limits.output_exceeded' then 'max_output_bytes'
                           when 'limits.memory_exceeded' then 'max_memory_mb'
                           when 'limits.cores_exceeded' then 'max_cores'
                           else 'max_runtime_s' end as kind
        from caller v
        join ops.tasks t on v.projects is null or t.project_id = any(v.projects)
        join ops.events e on e.task_id = t.id
        where (e.type in ('sql.statement.refused', 'limits.output_exceeded', 'limits.memory_exceeded',
                          'limits.cores_exceeded')
               or (e.type = 'finish' and e.data ->> 'outcome' = 'timed_out'))
          and t.org_id = p_org
          and e.ts > now() - interval '30 days'
          and (p_before_at is null or e.ts <= p_before_at)
    ), attributed as (
        select coalesce(
                   -- memory and cores stops carry their cap (ops.attach_limit_cap)
                   (select c.id from ops.caps c
                    where r.kind in ('max_memory_mb', 'max_cores') and c.id::text = r.data -> 'cap' ->> 'id'
                      and c.org_id = p_org),
                   (select c.id from ops.caps c
                    where r.kind not in ('max_memory_mb', 'max_cores')
                      and c.org_id = p_org and c.enabled and c.kind = r.kind and ops.cap_applies(c, r.t)
                      and (r.kind <> 'max_runtime_s' or (r.t).timeout_s is null or c.limit_value <= (r.t).timeout_s)
                    order by c.limit_value, c.id
                    limit 1)) as cap_id,
               r.ts, null::timestamptz as ended_at,
               case when r.kind = 'scanned_bytes_per_query' then 'engine' else 'agent' end as layer,
               r.run_id, null::text as run_name, (r.t).key as task_key, r.attempt, r.message,
               (r.t).project_id, (r.t).environment_id, 1 as repeats, 'e' || r.id as key
        from refused r
    ), recorded as (
        select x.cap_id, x.at as ts,
               case when x.layer = 'claim' then coalesce(
                   (select a.claimed_at from ops.task_attempts a where a.task_id = x.task_id and a.attempt = x.attempt + 1),
                   (select t.finished_at from ops.tasks t where t.id = x.task_id and t.status <> 'queued'
                      and t.attempt = x.attempt)) end as ended_at,
               x.layer, x.run_id, x.run_name,
               coalesce((select t.key from ops.tasks t where t.id = x.task_id), '') as task_key,
               null::integer as attempt, x.message, x.project_id, x.environment_id, x.repeats,
               'c' || x.id::text as key, x.principal
        from caller v
        join ops.cap_refusal_events x on v.projects is null or x.project_id = any(v.projects)
        where x.org_id = p_org and x.at > now() - interval '30 days'
          and (p_cap is null or x.cap_id = p_cap)
          and (p_before_at is null or x.at <= p_before_at)
    ), held as (
        -- Tasks a full claim cap holds now that no claim has tried yet (nothing recorded for them).
        select c.id as cap_id, q.queued_at as ts, null::timestamptz as ended_at, 'claim' as layer, q.run_id,
               null::text as run_name, q.key as task_key, null::integer as attempt,
               format('held in the queue: %s at its %s cap "%s" (%s)', c.scope,
                      case c.kind when 'concurrent_tasks' then 'concurrency' else 'compute' end, c.name,
                      case c.kind when 'concurrent_tasks' then format('%s running of %s', n.running, c.limit_value)
                           else format('%s s used today of %s', round(coalesce(u.compute_seconds, 0)), c.limit_value)
                      end) as message,
               q.project_id, q.environment_id, 1 as repeats, 'q' || q.id::text as key, null::text as principal
        from caller v
        cross join ops.caps c
        left join ops.cap_usage u on u.cap_id = c.id and u.day = ops.utc_today()
        cross join lateral (
            select count(*) as running from ops.tasks x
            where c.kind = 'concurrent_tasks' and x.org_id = p_org and x.status in ('claimed', 'running')
              and ops.cap_applies(c, x)
        ) n
        cross join lateral (
            select x.id, x.run_id, x.key, x.queued_at, x.project_id, x.environment_id from ops.tasks x
            where x.org_id = p_org and x.status = 'queued' and ops.cap_applies(c, x)
              and (v.projects is null or x.project_id = any(v.projects))
              and not exists (select 1 from ops.cap_refusal_events h
                              where h.task_id = x.id and h.attempt = x.attempt and h.cap_id = c.id)
            order by x.queued_at
            limit p_per_cap
        ) q
        where c.org_id = p_org and c.enabled and (p_cap is null or c.id = p_cap)
          and ((c.kind = 'concurrent_tasks' and n.running >= c.limit_value)
               or (c.kind = 'compute_seconds_per_day' and coalesce(u.compute_seconds, 0) >= c.limit_value))
    ), ranked as (
        select a.*, row_number() over (partition by a.cap_id order by a.ts desc, a.key desc) as n
        from (select cap_id, ts, ended_at, layer, run_id, run_name, task_key, attempt, message, project_id,
                     environment_id, repeats, key, null::text as principal
              from attributed
              where cap_id is not null and (p_cap is null or cap_id = p_cap)
              union all
              select cap_id, ts, ended_at, layer, run_id, run_name, task_key, attempt, message, project_id,
                     environment_id, repeats, key, principal from recorded
              union all
              select cap_id, ts, ended_at, layer, run_id, run_name, task_key, attempt, message, project_id,
                     environment_id, repeats, key, principal from held) a
        where p_before_at is null or (a.ts, a.key) < (p_before_at, coalesce(p_before_key, ''))
    )
    select k.cap_id, k.ts, k.ended_at, k.layer, k.run_id, coalesce(r.name, k.run_name, ''), k.task_key, k.attempt,
           k.message, coalesce(k.principal, r.requested_by_name, ''), p.slug, en.name, k.repeats, k.key
    from ranked k
    left join ops.runs r on r.id = k.run_id
    join ops.projects p on p.id = k.project_id
    join ops.environments en on en.id = k.environment_id
    where k.n <= p_per_cap
    order by k.cap_id, k.ts desc, k.key desc
$$;

revoke execute on function ops.cap_refusals(uuid, integer, uuid, timestamptz, text) from public;
grant execute on function ops.cap_refusals(uuid, integer, uuid, timestamptz, text) to authenticated, service_role;
