-- Tenancy and security hardening (issue 14): executors and pools belong to an organisation, claims
-- only return the executor's organisation's tasks, routing decides the pool, lifecycle tables are
-- written only through the SECURITY DEFINER functions, secret columns are hidden from members,
-- claims are idempotent by claim id, and every lifecycle function takes its locks in one order.
--
-- LOCK ORDER (every lifecycle function; a function that needs a later lock never waits for an
-- earlier one while holding a later one):
--   1. ops.tasks rows          claim: FOR UPDATE SKIP LOCKED (never waits); finalize/release: by id
--   2. ops.caps rows           ascending id. ops.submit_run: FOR UPDATE on its runs_per_day caps;
--                              claim, finalize and the reaper: FOR NO KEY UPDATE on every enabled cap
--                              of the organisations involved, all taken before any cap_usage row
--                              (ops.lock_caps), so a batch never locks a cap after a usage row.
--   3. ops.cap_usage rows      ascending cap_id (ops.record_task_usage; claim's peak upsert; the
--                              BEFORE INSERT trigger on ops.runs takes submit's rows in this order
--                              before submit_run's own upsert touches them)
--   4. ops.runs rows           status refresh last (batch finalize refreshes each run once, by id)
-- NO KEY UPDATE (not UPDATE) on caps lets the foreign-key check of a new cap_usage row (KEY SHARE)
-- pass, so a submit inserting a usage row never waits for a finalize holding the cap.

-- Pools ------------------------------------------------------------------------------------------

create table ops.pools (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- Off by default. When on, this organisation's executors in the pool may also run tasks of
    -- other organisations whose own routing rules send them to a pool of this name (and that own no
    -- pool of that name). Changed only by a trusted caller through ops.set_pool_shared (audited).
    shared boolean not null default false,
    description text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name)
);

-- Executors belong to an organisation ------------------------------------------------------------

alter table ops.executors add column org_id uuid references ops.orgs (id);

-- Existing executors go to: the only org; else the org whose routing rules name their pool (when
-- exactly one does); else the demo org; else the oldest org.
do $$
begin
    if exists (select 1 from ops.executors) and not exists (select 1 from ops.orgs) then
        insert into ops.orgs (slug, name) values ('default', 'Default');
    end if;
    update ops.executors e set org_id = (select o.id from ops.orgs o)
    where e.org_id is null and (select count(*) from ops.orgs) = 1;
    update ops.executors e set org_id = x.org_id
    from (select r.pool, min(r.org_id::text)::uuid as org_id from ops.routing_rules r
          group by r.pool having count(distinct r.org_id) = 1) x
    where e.org_id is null and x.pool = e.pool;
    update ops.executors e set org_id = o.id from ops.orgs o where e.org_id is null and o.slug = 'demo';
    update ops.executors e set org_id = (select o.id from ops.orgs o order by o.created_at, o.id limit 1)
    where e.org_id is null;
end $$;

alter table ops.executors alter column org_id set not null;
create index executors_org_pool on ops.executors (org_id, pool);

insert into ops.pools (org_id, name)
select distinct e.org_id, e.pool from ops.executors e
union
select distinct r.org_id, r.pool from ops.routing_rules r where r.pool ~ '^[a-z0-9][a-z0-9_-]{0,62}$'
on conflict do nothing;

-- An executor's pool row exists (created in the executor's org when a token names a new pool).
create function ops.ensure_executor_pool() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    insert into ops.pools (org_id, name) values (new.org_id, new.pool) on conflict do nothing;
    return new;
end;
$$;

create trigger executors_ensure_pool before insert or update of org_id, pool on ops.executors
    for each row execute function ops.ensure_executor_pool();

alter table ops.executors add constraint executors_pool_fk
    foreign key (org_id, pool) references ops.pools (org_id, name);

-- Only a trusted caller (CLI, service role) shares a pool; the change is audited.
create function ops.set_pool_shared(p_org uuid, p_pool text, p_shared boolean) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
    v_pool ops.pools;
    v_old boolean;
begin
    if ops.caller_is_end_user() then
        raise exception using errcode = 'LH403',
            message = 'permission denied: sharing a pool across organisations is a platform setting (lakehouse executors pool share)';
    end if;
    select p.shared into v_old from ops.pools p where p.org_id = p_org and p.name = p_pool for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'pool',
            message = format('pool %s does not exist in org %s', p_pool, p_org);
    end if;
    update ops.pools p set shared = p_shared, updated_at = now()
    where p.org_id = p_org and p.name = p_pool
    returning * into v_pool;
    insert into ops.audit_log (actor, entity, entity_id, action, old_status, new_status, detail)
    values (coalesce(nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
            'pools', v_pool.id, case when p_shared then 'share' else 'unshare' end,
            case when v_old then 'shared' else 'private' end, case when p_shared then 'shared' else 'private' end,
            jsonb_build_object('org_id', p_org, 'pool', p_pool));
    return p_shared;
end;
$$;

-- Routing decides the pool -------------------------------------------------------------------------

alter table ops.routing_rules add column allow_pool_override boolean not null default false;
comment on column ops.routing_rules.allow_pool_override is
    'When true, a task matched by this rule may name its own pool in its spec ("pool"); otherwise the rule''s pool is used.';

-- Why a queued task may never be claimed (null when some executor can take it).
alter table ops.tasks add column routing_problem text;
create index tasks_claimable_org on ops.tasks (org_id, pool, priority desc, queued_at) where status = 'queued';

create function ops.route_task(
    p_org uuid, p_project uuid, p_environment text, p_engine text, p_labels text[], p_tags text[]
) returns table (rule_id uuid, pool text, required_labels text[], allow_pool_override boolean)
language sql stable security definer
set search_path = ''
as $$
    select r.id, r.pool, r.required_labels, r.allow_pool_override
    from ops.routing_rules r
    where r.org_id = p_org and r.enabled
      and (r.match_project_id is null or r.match_project_id = p_project)
      and (r.match_environment is null or r.match_environment = p_environment)
      and (r.match_engine is null or r.match_engine = p_engine)
      and r.match_labels <@ coalesce(p_labels, '{}')
      and r.match_tags <@ coalesce(p_tags, '{}')
    order by r.position
    limit 1
$$;

-- Whether an org's task could ever be claimed from a pool: an unrevoked executor of the org (or of
-- an org sharing a pool of that name) offers the engine and has the labels.
create function ops.pool_problem(
    p_org uuid, p_pool text, p_engine text, p_labels text[], p_routed boolean default true
) returns text
language sql stable security definer
set search_path = ''
as $$
    select case when exists (
        select 1 from ops.executors e
        where e.pool = p_pool and e.token_revoked_at is null
          and p_engine = any(e.engines) and coalesce(p_labels, '{}') <@ e.labels
          and (e.org_id = p_org
               or (p_routed
                   and exists (select 1 from ops.pools s where s.org_id = e.org_id and s.name = p_pool and s.shared)
                   and not exists (select 1 from ops.pools o where o.org_id = p_org and o.name = p_pool))))
    then null
    else format('no executor in pool %s offers engine %s', p_pool, p_engine)
         || case when cardinality(coalesce(p_labels, '{}')) > 0
                 then format(' with labels %s', array_to_string(p_labels, ', ')) else '' end
    end
$$;

-- When a task becomes queued: stamp queued_at, resolve its pool from the first matching routing
-- rule (the spec's "pool" only where that rule allows an override), else 'default', and record
-- why no executor could take it.
create or replace function ops.route_on_queue() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    v_env text;
    v_tags text[];
    v_route record;
    v_spec_labels text[] := ops.json_text_array(new.spec -> 'required_labels');
begin
    if new.status <> 'queued' or (tg_op = 'UPDATE' and old.status = 'queued') then
        return new;
    end if;
    new.queued_at := now();
    select e.name into v_env from ops.environments e where e.id = new.environment_id;
    select r.tags into v_tags from ops.runs r where r.id = new.run_id;
    select x.* into v_route
    from ops.route_task(new.org_id, new.project_id, v_env, new.engine, new.labels, v_tags) x;
    new.route_rule_id := v_route.rule_id;
    if v_route.rule_id is not null and v_route.allow_pool_override and new.requested_pool is not null then
        new.pool := new.requested_pool;
        new.required_labels := array(select distinct l from unnest(v_spec_labels) l order by l);
    else
        new.pool := coalesce(v_route.pool, 'default');
        new.required_labels := array(
            select distinct l from unnest(v_spec_labels || coalesce(v_route.required_labels, '{}')) l order by l);
    end if;
    new.routing_problem := ops.pool_problem(new.org_id, new.pool, new.engine, new.required_labels,
                                            new.route_rule_id is not null);
    return new;
end;
$$;

-- Re-resolve queued tasks after routing rules change, so a new rule applies to waiting work.
create or replace function ops.reroute_queued() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    update ops.tasks t
    set pool = x.pool, route_rule_id = x.rule_id, required_labels = x.labels,
        routing_problem = ops.pool_problem(t.org_id, x.pool, t.engine, x.labels, x.rule_id is not null)
    from (
        select q.id, rt.rule_id,
               case when rt.rule_id is not null and rt.allow_pool_override and q.requested_pool is not null
                    then q.requested_pool else coalesce(rt.pool, 'default') end as pool,
               array(select distinct l
                     from unnest(ops.json_text_array(q.spec -> 'required_labels')
                                 || case when rt.rule_id is not null and rt.allow_pool_override
                                              and q.requested_pool is not null
                                         then '{}'::text[] else coalesce(rt.required_labels, '{}') end) l
                     order by l) as labels
        from ops.tasks q
        join ops.runs r on r.id = q.run_id
        join ops.environments e on e.id = q.environment_id
        left join lateral ops.route_task(q.org_id, q.project_id, e.name, q.engine, q.labels, r.tags) rt on true
        where q.status = 'queued'
    ) x
    where t.id = x.id;
    return null;
end;
$$;

-- Caps: one lock order ------------------------------------------------------------------------------

-- Lock every enabled cap of the organisations, ascending id (step 2 of the lock order).
create function ops.lock_caps(p_orgs uuid[]) returns void
language sql security definer
set search_path = ''
as $$
    select 1 from (
        select c.id from ops.caps c where c.org_id = any(p_orgs) and c.enabled order by c.id for no key update
    ) locked
$$;

-- Record usage of finished work against every cap that applies, caps then usage rows by id.
create or replace function ops.record_task_usage(t ops.tasks, p_outcome text) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    v_seconds double precision :=
        greatest(extract(epoch from (coalesce(t.finished_at, now()) - coalesce(t.started_at, t.claimed_at, now()))), 0);
begin
    if not exists (select 1 from ops.caps c where c.org_id = t.org_id and c.enabled) then
        return;
    end if;
    perform ops.lock_caps(array[t.org_id]);
    insert into ops.cap_usage as u (cap_id, day, compute_seconds, max_runtime_s, breaches)
    select c.id, ops.utc_today(), v_seconds, v_seconds,
           case when p_outcome = 'timed_out' and c.kind = 'max_runtime_s' then 1 else 0 end
    from ops.caps c
    where c.enabled and ops.cap_applies(c, t)
    order by c.id
    on conflict (cap_id, day) do update
        set compute_seconds = u.compute_seconds + excluded.compute_seconds,
            max_runtime_s = greatest(u.max_runtime_s, excluded.max_runtime_s),
            breaches = u.breaches + excluded.breaches,
            updated_at = now();
end;
$$;

-- Submit (ops.submit_run, owned elsewhere) upserts its usage rows after inserting the run: take
-- them here first, in cap_id order, so its upsert finds them already locked (step 3).
create function ops.lock_run_cap_usage() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    if exists (select 1 from ops.caps c where c.org_id = new.org_id and c.enabled) then
        insert into ops.cap_usage as u (cap_id, day)
        select c.id, ops.utc_today() from ops.caps c
        where c.org_id = new.org_id and c.enabled
          and (c.scope = 'org' or (c.scope = 'project' and c.project_id = new.project_id)
               or (c.scope = 'environment' and c.environment_id = new.environment_id)
               or (c.scope = 'engine' and c.engine = any(new.engines)))
        order by c.id
        on conflict (cap_id, day) do update set updated_at = u.updated_at;
    end if;
    return new;
end;
$$;

create trigger runs_lock_cap_usage before insert on ops.runs
    for each row execute function ops.lock_run_cap_usage();

-- Finalize many: caps of every org in the batch first, then each task (usage in cap_id order),
-- then each run's status once, by run id.
create or replace function ops.finalize_tasks(p_items jsonb)
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

-- Reaper: the caps of the orgs with expired leases first, then each task.
create or replace function ops.requeue_expired() returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_task ops.tasks;
    v_n integer := 0;
    v_final text;
    v_ids uuid[];
    v_orgs uuid[];
begin
    v_ids := array(
        select t.id from ops.tasks t
        where t.status in ('claimed', 'running') and t.lease_expires_at < now()
        order by t.id
        limit 1000
        for update skip locked);
    if cardinality(v_ids) = 0 then
        return 0;
    end if;
    v_orgs := array(select distinct t.org_id from ops.tasks t where t.id = any(v_ids));
    if exists (select 1 from ops.caps c where c.org_id = any(v_orgs) and c.enabled) then
        perform ops.lock_caps(v_orgs);
    end if;
    for v_task in select t.* from ops.tasks t where t.id = any(v_ids) order by t.lease_expires_at, t.id loop
        update ops.task_attempts a
        set outcome = 'lost', finished_at = now(),
            error = format('lease expired at %s without a heartbeat', v_task.lease_expires_at)
        where a.task_id = v_task.id and a.attempt = v_task.attempt and a.outcome is null;
        if v_task.cancel_requested then
            v_final := 'cancelled';
        elsif v_task.attempt < v_task.max_attempts then
            v_final := null;
            update ops.tasks t
            set status = 'queued', lease_token = null, lease_expires_at = null, executor_id = null,
                error = format('attempt %s lost: lease expired', v_task.attempt),
                not_before = now() + make_interval(
                    secs => least(v_task.retry_backoff_s * power(2, v_task.attempt - 1) * (1 + random() * 0.1), 86400))
            where t.id = v_task.id;
        else
            v_final := 'lost';
        end if;
        if v_final is not null then
            update ops.tasks t
            set status = v_final, lease_token = null, lease_expires_at = null, finished_at = now(),
                error = case when v_final = 'lost'
                             then format('lost: lease expired on attempt %s of %s', v_task.attempt, v_task.max_attempts)
                             else 'cancelled: lease expired after a cancel request' end
            where t.id = v_task.id
            returning * into v_task;
            perform ops.settle_dependants(v_task.run_id, v_task.key, v_final);
            perform ops.record_task_usage(v_task, v_final);
        end if;
        v_n := v_n + 1;
    end loop;
    for v_task in select distinct on (t.run_id) t.* from ops.tasks t where t.id = any(v_ids) order by t.run_id loop
        perform ops.refresh_run_status(v_task.run_id);
    end loop;
    return v_n;
end;
$$;

-- Claim: the executor's org only, idempotent by claim id -----------------------------------------------

alter table ops.task_attempts add column claim_id uuid;
create index task_attempts_claim on ops.task_attempts (executor_id, claim_id) where claim_id is not null;

drop function ops.claim_tasks(uuid, text[], text[], integer, integer);

create function ops.claim_tasks(
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
        -- Fast path: one statement picks, leases and records attempts.
        with picked as (
            select t.id from ops.tasks t
            where t.status = 'queued' and t.pool = v_exec.pool and t.engine = any(v_engines)
              and t.required_labels <@ v_labels and t.not_before <= now()
              and (t.org_id = v_exec.org_id
                   or (v_shared and t.route_rule_id is not null
                       and not exists (select 1 from ops.pools o where o.org_id = t.org_id and o.name = t.pool)))
            order by t.priority desc, t.queued_at
            limit v_max
            for update skip locked
        ), leased as (
            update ops.tasks t
            set status = 'claimed', attempt = t.attempt + 1, lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                executor_id = p_executor, claimed_at = now(), started_at = null, routing_problem = null
            from picked where t.id = picked.id
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
end;
$$;

-- Executor heartbeat: a task the server thinks this executor holds, claimed more than
-- p_unknown_after_seconds ago but not named by the agent, is handed back (the agent lost it: a
-- restart, a claim reply it never read); the attempt does not count against max_attempts.
drop function ops.executor_heartbeat(uuid, uuid[]);

create function ops.executor_heartbeat(p_executor uuid, p_running uuid[], p_unknown_after_seconds integer default 30)
returns table (drain boolean, cancel_task_ids uuid[], lost_task_ids uuid[], released_task_ids uuid[])
language plpgsql security definer
set search_path = ''
as $$
declare
    v_drain boolean;
    v_released uuid[] := '{}';
    v_task record;
begin
    update ops.executors e
    set last_heartbeat_at = now(), running_tasks = coalesce(cardinality(p_running), 0),
        status = case when e.drain_requested then 'draining' else 'online' end
    where e.id = p_executor and e.token_revoked_at is null
    returning e.drain_requested into v_drain;
    if not found then
        raise exception using errcode = 'LH404', message = format('executor %s is not registered or was revoked', p_executor);
    end if;
    for v_task in
        select t.id, t.lease_token from ops.tasks t
        where t.executor_id = p_executor and t.status in ('claimed', 'running')
          and not t.id = any(coalesce(p_running, '{}'))
          and t.claimed_at < now() - make_interval(secs => p_unknown_after_seconds)
        order by t.id
    loop
        perform ops.release_task(v_task.id, v_task.lease_token, 'the executor no longer knows this task (heartbeat)');
        v_released := v_released || v_task.id;
    end loop;
    return query
    select v_drain,
           coalesce(array(select t.id from ops.tasks t
                          where t.id = any(p_running) and t.executor_id = p_executor
                            and t.status in ('claimed', 'running') and t.cancel_requested), '{}'),
           coalesce(array(select r from unnest(p_running) r
                          where not exists (select 1 from ops.tasks t where t.id = r and t.executor_id = p_executor
                                              and t.status in ('claimed', 'running'))), '{}'),
           v_released;
end;
$$;

-- Heartbeat of a lease whose attempt was already finalized: say so (not "lease lost"), so an agent
-- whose heartbeat raced its own finalize does not report the task as lost.
create or replace function ops.extend_lease(p_task uuid, p_lease uuid, p_lease_seconds integer default 60)
returns table (lease_expires_at timestamptz, cancel_requested boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_expires timestamptz;
    v_cancel boolean;
    v_outcome text;
begin
    update ops.tasks t
    set lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        status = 'running',
        started_at = coalesce(t.started_at, now())
    where t.id = p_task and t.lease_token = p_lease and t.status in ('claimed', 'running')
    returning t.lease_expires_at, t.cancel_requested into v_expires, v_cancel;
    if not found then
        select a.outcome into v_outcome from ops.task_attempts a where a.task_id = p_task and a.lease_token = p_lease;
        if v_outcome in ('succeeded', 'failed', 'cancelled', 'timed_out', 'released') then
            raise exception using errcode = 'LH409',
                message = format('finalized: task %s attempt already ended %s with this lease', p_task, v_outcome),
                hint = 'nothing to do: the outcome is recorded';
        end if;
        raise exception using errcode = 'LH409',
            message = format('lease lost: task %s is no longer held by this lease (expired, reaped or finalized)', p_task),
            hint = 'stop working on the task; its outcome will not be recorded';
    end if;
    update ops.task_attempts a set started_at = coalesce(a.started_at, now())
    where a.task_id = p_task and a.lease_token = p_lease and a.started_at is null;
    return query select v_expires, v_cancel;
end;
$$;

-- Executors seen and managed per organisation ------------------------------------------------------

create or replace function ops.executor_registry(p_offline_after_seconds integer)
returns table (
    id uuid, name text, pool text, labels text[], engines text[], max_concurrency integer,
    running integer, version text, hostname text, state text, drain_requested boolean,
    last_heartbeat_at timestamptz, heartbeat_age_s double precision, registered_at timestamptz,
    token_revoked_at timestamptz
)
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_end_user boolean := ops.caller_is_end_user();
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
    where not v_end_user or ops.org_role(e.org_id) is not null
    order by e.pool, e.name;
end;
$$;

create function ops.require_executor_org_admin(p_executor uuid) returns void
language plpgsql stable security definer
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() and coalesce((
            select ops.org_role(e.org_id) from ops.executors e where e.id = p_executor), '') <> 'admin' then
        raise exception using
            errcode = 'LH403',
            message = 'permission denied: executors are managed by admins of their organisation';
    end if;
end;
$$;

create or replace function ops.set_executor_drain(p_executor uuid, p_drain boolean) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_exec ops.executors;
begin
    perform ops.require_executor_org_admin(p_executor);
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
            jsonb_build_object('name', v_exec.name, 'pool', v_exec.pool, 'org_id', v_exec.org_id));
    return v_exec.status;
end;
$$;

create or replace function ops.revoke_executor(p_executor uuid) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_exec ops.executors;
begin
    perform ops.require_executor_org_admin(p_executor);
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
            'executors', p_executor, 'revoke',
            jsonb_build_object('name', v_exec.name, 'pool', v_exec.pool, 'org_id', v_exec.org_id));
    return v_exec.status;
end;
$$;

-- No writes around the lifecycle; secrets hidden from members ----------------------------------------

-- Runs are created by ops.submit_run and cancelled by ops.cancel_run (both check role and caps).
revoke insert, update, delete on ops.runs from authenticated, anon;
revoke update (cancel_requested_at, cancel_requested_by) on ops.runs from authenticated;
drop policy runs_submit on ops.runs;
drop policy runs_cancel on ops.runs;
revoke insert, update, delete, truncate on ops.tasks, ops.task_attempts, ops.events, ops.artifacts,
    ops.artifact_uploads, ops.cap_usage, ops.audit_log, ops.executors, ops.users, ops.api_tokens,
    ops.user_sessions from authenticated, anon;

-- Executors: members of the executor's organisation see it; never its token hash.
drop policy executors_read on ops.executors;
create policy executors_read on ops.executors for select to authenticated
    using (ops.org_role(org_id) is not null);
revoke select on ops.executors from authenticated;
grant select (id, org_id, name, pool, labels, engines, max_concurrency, running_tasks, version, hostname, status,
              drain_requested, last_heartbeat_at, token_revoked_at, registered_at, metadata)
    on ops.executors to authenticated;

revoke select on ops.users from authenticated;
grant select (id, email, display_name, is_active, created_at, last_login_at) on ops.users to authenticated;

revoke select on ops.api_tokens from authenticated;
grant select (id, user_id, name, token_prefix, created_at, expires_at, last_used_at, revoked_at)
    on ops.api_tokens to authenticated;

revoke all on ops.user_sessions from authenticated, anon;

alter table ops.pools enable row level security;
grant select on ops.pools to authenticated;
grant all on ops.pools to service_role;
create policy pools_read on ops.pools for select to authenticated
    using (ops.org_role(org_id) is not null);

-- The migration runner's ledger: owner only (RLS on, no policy, no grant).
alter table ops.schema_migrations enable row level security;

-- Function grants: new functions closed to members; the registry ones as before.
revoke execute on all functions in schema ops from public;
revoke execute on function ops.claim_tasks(uuid, text[], text[], integer, integer, uuid),
    ops.executor_heartbeat(uuid, uuid[], integer), ops.set_pool_shared(uuid, text, boolean),
    ops.lock_caps(uuid[]), ops.route_task(uuid, uuid, text, text, text[], text[]),
    ops.pool_problem(uuid, text, text, text[], boolean) from anon, authenticated;
grant execute on function ops.require_executor_org_admin(uuid) to authenticated;
grant execute on all functions in schema ops to service_role;
