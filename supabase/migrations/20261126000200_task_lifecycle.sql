-- Task lifecycle as SQL functions: submit, route, claim (SKIP LOCKED, caps), heartbeat, events,
-- finalize (idempotent, lease-fenced), requeue of expired leases, cancel. Every function that
-- changes a task checks its lease token in the same statement that changes it.
--
-- Errors carry SQLSTATEs the API maps to HTTP: LH403 forbidden, LH404 not found, LH409 lease or
-- state conflict, LH422 invalid input (the COLUMN field names the offending field), LH423 immutable.

create function ops.utc_today() returns date
language sql stable
set search_path = ''
as $$ select (now() at time zone 'utc')::date $$;

create function ops.role_rank(p_role text) returns integer
language sql immutable
set search_path = ''
as $$ select case p_role when 'admin' then 3 when 'operator' then 2 when 'viewer' then 1 else 0 end $$;

-- Highest role of the calling user (auth.uid()) on a project, counting org-wide membership.
create function ops.project_role(p_project uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select role from (
        select pm.role from ops.project_members pm
        where pm.project_id = p_project and pm.user_id = auth.uid()
        union all
        select om.role from ops.org_members om
        join ops.projects p on p.org_id = om.org_id
        where p.id = p_project and om.user_id = auth.uid()
    ) roles
    order by ops.role_rank(role) desc
    limit 1
$$;

create function ops.has_project_role(p_project uuid, p_min text) returns boolean
language sql stable security definer
set search_path = ''
as $$ select coalesce(ops.role_rank(ops.project_role(p_project)) >= ops.role_rank(p_min), false) $$;

create function ops.org_role(p_org uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select role from (
        select om.role from ops.org_members om where om.org_id = p_org and om.user_id = auth.uid()
        union all
        select pm.role from ops.project_members pm
        join ops.projects p on p.id = pm.project_id
        where p.org_id = p_org and pm.user_id = auth.uid() and pm.role = 'viewer'
    ) roles
    order by ops.role_rank(role) desc
    limit 1
$$;

-- True when the caller is an end user (PostgREST's anon/authenticated roles or their JWT), whose
-- rights come from membership; the API backend and the service role are trusted callers.
create function ops.caller_is_end_user() returns boolean
language sql stable
set search_path = ''
as $$
    select coalesce(current_setting('role', true), 'none') in ('anon', 'authenticated')
        or coalesce(auth.role(), '') in ('anon', 'authenticated')
$$;

create function ops.require_project_role(p_project uuid, p_min text) returns void
language plpgsql stable security definer
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() and not ops.has_project_role(p_project, p_min) then
        raise exception using
            errcode = 'LH403',
            message = format('permission denied: the %s role on project %s is required', p_min, p_project);
    end if;
end;
$$;

-- Routing ---------------------------------------------------------------------------------------

create function ops.resolve_route(
    p_org uuid, p_project uuid, p_environment text, p_engine text, p_labels text[], p_tags text[]
) returns table (rule_id uuid, pool text, required_labels text[])
language sql stable security definer
set search_path = ''
as $$
    select r.id, r.pool, r.required_labels
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

create function ops.json_text_array(p jsonb) returns text[]
language sql immutable
set search_path = ''
as $$
    select case when p is null or jsonb_typeof(p) <> 'array' then '{}'::text[]
                else array(select jsonb_array_elements_text(p)) end
$$;

-- When a task becomes queued: stamp queued_at and resolve its pool and required labels. An
-- explicit pool in the task spec wins; otherwise the first matching routing rule, else 'default'.
create function ops.route_on_queue() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    v_env text;
    v_tags text[];
    v_rule uuid;
    v_pool text;
    v_rule_labels text[];
    v_spec_labels text[] := ops.json_text_array(new.spec -> 'required_labels');
begin
    if new.status <> 'queued' or (tg_op = 'UPDATE' and old.status = 'queued') then
        return new;
    end if;
    new.queued_at := now();
    if new.requested_pool is not null then
        new.pool := new.requested_pool;
        new.required_labels := v_spec_labels;
        new.route_rule_id := null;
        return new;
    end if;
    if exists (select 1 from ops.routing_rules r where r.org_id = new.org_id and r.enabled) then
        select e.name into v_env from ops.environments e where e.id = new.environment_id;
        select r.tags into v_tags from ops.runs r where r.id = new.run_id;
        select x.rule_id, x.pool, x.required_labels into v_rule, v_pool, v_rule_labels
        from ops.resolve_route(new.org_id, new.project_id, v_env, new.engine, new.labels, v_tags) x;
    end if;
    new.pool := coalesce(v_pool, 'default');
    new.route_rule_id := v_rule;
    new.required_labels := array(
        select distinct l from unnest(v_spec_labels || coalesce(v_rule_labels, '{}')) l order by l);
    return new;
end;
$$;

create trigger tasks_route_insert before insert on ops.tasks
    for each row execute function ops.route_on_queue();
create trigger tasks_route_update before update of status on ops.tasks
    for each row execute function ops.route_on_queue();

-- Wake long-polling claimers of the pool (payload: pool name). Postgres folds duplicates per txn.
create function ops.notify_queued() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform pg_notify('lakehouse_tasks_queued', coalesce(new.pool, 'default'));
    return null;
end;
$$;

create trigger tasks_notify_insert after insert on ops.tasks
    for each row when (new.status = 'queued') execute function ops.notify_queued();
create trigger tasks_notify_update after update of status on ops.tasks
    for each row when (new.status = 'queued' and old.status is distinct from 'queued')
    execute function ops.notify_queued();

-- Re-resolve queued tasks after routing rules change, so a new rule applies to waiting work.
create function ops.reroute_queued() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    update ops.tasks t
    set pool = coalesce(x.pool, 'default'), route_rule_id = x.rule_id, required_labels = x.labels
    from (
        select q.id, rt.rule_id, rt.pool,
               array(select distinct l
                     from unnest(ops.json_text_array(q.spec -> 'required_labels') || coalesce(rt.required_labels, '{}')) l
                     order by l) as labels
        from ops.tasks q
        join ops.runs r on r.id = q.run_id
        join ops.environments e on e.id = q.environment_id
        left join lateral ops.resolve_route(q.org_id, q.project_id, e.name, q.engine, q.labels, r.tags) rt on true
        where q.status = 'queued' and q.requested_pool is null
    ) x
    where t.id = x.id;
    return null;
end;
$$;

create trigger routing_rules_reroute after insert or update or delete on ops.routing_rules
    for each statement execute function ops.reroute_queued();

-- Caps ------------------------------------------------------------------------------------------

create function ops.cap_applies(c ops.caps, t ops.tasks) returns boolean
language sql stable
set search_path = ''
as $$
    select c.org_id = t.org_id and case c.scope
        when 'org' then true
        when 'project' then c.project_id = t.project_id
        when 'environment' then c.environment_id = t.environment_id
        when 'pool' then c.pool = t.pool
        when 'engine' then c.engine = t.engine
        else false end
$$;

-- Limits a claimed task must honour (the smallest of each kind that applies), for the agent.
create function ops.task_limits(t ops.tasks) returns jsonb
language sql stable security definer
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(kind, lim), '{}'::jsonb)
    from (
        select c.kind, min(c.limit_value) as lim
        from ops.caps c
        where c.enabled
          and c.kind in ('max_runtime_s', 'scanned_bytes_per_query', 'max_memory_mb', 'max_cores',
                         'max_output_bytes')
          and ops.cap_applies(c, t)
        group by c.kind
    ) limits
$$;

-- Record usage of finished work against every cap that applies to the task.
create function ops.record_task_usage(t ops.tasks, p_outcome text) returns void
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
    insert into ops.cap_usage as u (cap_id, day, compute_seconds, max_runtime_s, breaches)
    select c.id, ops.utc_today(), v_seconds, v_seconds,
           case when p_outcome = 'timed_out' and c.kind = 'max_runtime_s' then 1 else 0 end
    from ops.caps c
    where c.enabled and ops.cap_applies(c, t)
    on conflict (cap_id, day) do update
        set compute_seconds = u.compute_seconds + excluded.compute_seconds,
            max_runtime_s = greatest(u.max_runtime_s, excluded.max_runtime_s),
            breaches = u.breaches + excluded.breaches,
            updated_at = now();
end;
$$;

-- Submit ----------------------------------------------------------------------------------------

create function ops.invalid(p_field text, p_message text) returns void
language plpgsql
set search_path = ''
as $$
begin
    raise exception using errcode = 'LH422', column = p_field, message = p_field || ': ' || p_message;
end;
$$;

-- Validate a run spec: {"name"?, "tasks": [{"key", "engine", "depends_on"?, "timeout_s"?,
-- "max_attempts"?, "retry_backoff_s"?, "pool"?, "labels"?, "required_labels"?, ...engine fields}]}
create function ops.validate_run_spec(p_spec jsonb) returns void
language plpgsql
set search_path = ''
as $$
declare
    v_tasks jsonb := p_spec -> 'tasks';
    v_task jsonb;
    v_keys text[] := '{}';
    v_key text;
    v_dep text;
    v_field text;
    v_done text[] := '{}';
    v_ready text[];
    i integer;
begin
    if p_spec is null or jsonb_typeof(p_spec) <> 'object' then
        perform ops.invalid('spec', 'must be a JSON object with a "tasks" array');
    end if;
    if v_tasks is null or jsonb_typeof(v_tasks) <> 'array' or jsonb_array_length(v_tasks) = 0 then
        perform ops.invalid('spec.tasks', 'must be a non-empty array of tasks');
    end if;
    if jsonb_array_length(v_tasks) > 1000 then
        perform ops.invalid('spec.tasks', 'at most 1000 tasks per run');
    end if;
    if p_spec ? 'name' and (jsonb_typeof(p_spec -> 'name') <> 'string' or length(p_spec ->> 'name') > 200) then
        perform ops.invalid('spec.name', 'must be a string of at most 200 characters');
    end if;
    for i in 0 .. jsonb_array_length(v_tasks) - 1 loop
        v_task := v_tasks -> i;
        v_field := format('spec.tasks[%s]', i);
        if jsonb_typeof(v_task) <> 'object' then
            perform ops.invalid(v_field, 'must be an object');
        end if;
        v_key := v_task ->> 'key';
        if v_key is null or jsonb_typeof(v_task -> 'key') <> 'string' or v_key !~ '^[A-Za-z0-9_.-]{1,100}$' then
            perform ops.invalid(v_field || '.key', 'required; 1-100 letters, digits, "_", "." or "-"');
        end if;
        if v_key = any(v_keys) then
            perform ops.invalid(v_field || '.key', format('duplicate task key "%s"', v_key));
        end if;
        v_keys := v_keys || v_key;
        if jsonb_typeof(v_task -> 'engine') is distinct from 'string'
           or (v_task ->> 'engine') !~ '^[a-z][a-z0-9_-]{0,40}$' then
            perform ops.invalid(v_field || '.engine', 'required; a lower-case engine name such as "shell"');
        end if;
        if v_task ? 'depends_on' and jsonb_typeof(v_task -> 'depends_on') <> 'array' then
            perform ops.invalid(v_field || '.depends_on', 'must be an array of task keys');
        end if;
        foreach v_field in array array['labels', 'required_labels'] loop
            if v_task ? v_field and (jsonb_typeof(v_task -> v_field) <> 'array' or exists (
                    select 1 from jsonb_array_elements(v_task -> v_field) e where jsonb_typeof(e) <> 'string')) then
                perform ops.invalid(format('spec.tasks[%s].%s', i, v_field), 'must be an array of strings');
            end if;
        end loop;
        if v_task ? 'timeout_s' and jsonb_typeof(v_task -> 'timeout_s') <> 'null' and (
                jsonb_typeof(v_task -> 'timeout_s') <> 'number' or (v_task ->> 'timeout_s')::numeric <= 0
                or (v_task ->> 'timeout_s')::numeric <> trunc((v_task ->> 'timeout_s')::numeric)
                or (v_task ->> 'timeout_s')::numeric > 2147483647) then
            perform ops.invalid(format('spec.tasks[%s].timeout_s', i), 'must be a positive whole number of seconds');
        end if;
        if v_task ? 'max_attempts' and (jsonb_typeof(v_task -> 'max_attempts') <> 'number'
                or (v_task ->> 'max_attempts')::numeric not between 1 and 100
                or (v_task ->> 'max_attempts')::numeric <> trunc((v_task ->> 'max_attempts')::numeric)) then
            perform ops.invalid(format('spec.tasks[%s].max_attempts', i), 'must be a whole number from 1 to 100');
        end if;
        if v_task ? 'retry_backoff_s' and (jsonb_typeof(v_task -> 'retry_backoff_s') <> 'number'
                or (v_task ->> 'retry_backoff_s')::numeric not between 0 and 86400
                or (v_task ->> 'retry_backoff_s')::numeric <> trunc((v_task ->> 'retry_backoff_s')::numeric)) then
            perform ops.invalid(format('spec.tasks[%s].retry_backoff_s', i), 'must be a whole number from 0 to 86400');
        end if;
        if v_task ? 'pool' and jsonb_typeof(v_task -> 'pool') <> 'null' and (
                jsonb_typeof(v_task -> 'pool') <> 'string' or (v_task ->> 'pool') !~ '^[a-z0-9][a-z0-9_-]{0,62}$') then
            perform ops.invalid(format('spec.tasks[%s].pool', i), 'must be a pool name (lower-case letters, digits, "_", "-")');
        end if;
    end loop;
    for i in 0 .. jsonb_array_length(v_tasks) - 1 loop
        v_task := v_tasks -> i;
        for v_dep in select jsonb_array_elements_text(coalesce(v_task -> 'depends_on', '[]')) loop
            if not v_dep = any(v_keys) then
                perform ops.invalid(format('spec.tasks[%s].depends_on', i), format('unknown task key "%s"', v_dep));
            end if;
        end loop;
    end loop;
    -- Kahn's algorithm: repeatedly take the tasks whose dependencies are all done.
    loop
        select array_agg(t ->> 'key') into v_ready
        from jsonb_array_elements(v_tasks) t
        where not (t ->> 'key') = any(v_done)
          and ops.json_text_array(t -> 'depends_on') <@ v_done;
        exit when v_ready is null;
        v_done := v_done || v_ready;
    end loop;
    if cardinality(v_done) < cardinality(v_keys) then
        perform ops.invalid('spec.tasks', format('dependency cycle among tasks %s',
            array_to_string(array(select k from unnest(v_keys) k where not k = any(v_done) order by k), ', ')));
    end if;
end;
$$;

create function ops.submit_run(
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
    p_retry_of uuid default null
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
            return query select null::uuid, false, format(
                'cap "%s" (runs_per_day = %s, %s scope) is reached: %s runs today; try tomorrow or raise the cap',
                v_cap.name, v_cap.limit_value, v_cap.scope, coalesce(v_used, 0));
            return;
        end if;
    end loop;

    insert into ops.runs as r (org_id, project_id, environment_id, name, spec, params, tags, engines, task_count,
                               priority, trigger, requested_by, requested_by_name, idempotency_key, retry_of)
    values (v_org, p_project, v_env, coalesce(p_spec ->> 'name', 'run'), p_spec, p_params, coalesce(p_tags, '{}'),
            v_engines, jsonb_array_length(p_spec -> 'tasks'), p_priority, p_trigger, p_requested_by,
            p_requested_by_name, p_idempotency_key, p_retry_of)
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

-- Run status is derived from its tasks ------------------------------------------------------------

create function ops.refresh_run_status(p_run uuid) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v record;
    v_status text;
begin
    select count(*) filter (where t.status in ('claimed', 'running')) as active,
           count(*) filter (where t.status in ('pending', 'queued')) as waiting,
           count(*) filter (where t.status in ('failed', 'lost', 'timed_out')) as failed,
           count(*) filter (where t.status = 'cancelled') as cancelled,
           count(*) filter (where t.attempt > 0) as started
    into v
    from ops.tasks t where t.run_id = p_run;
    v_status := case
        when v.active > 0 then 'running'
        when v.waiting > 0 then case when v.started > 0 then 'running' else 'queued' end
        when v.failed > 0 then 'failed'
        when v.cancelled > 0 then 'cancelled'
        else 'succeeded' end;
    update ops.runs r
    set status = v_status,
        started_at = case when v_status <> 'queued' then coalesce(r.started_at, now()) else r.started_at end,
        finished_at = case when v_status in ('succeeded', 'failed', 'cancelled') then coalesce(r.finished_at, now()) end
    where r.id = p_run and r.status is distinct from v_status;
    return v_status;
end;
$$;

-- After a task ends: release dependants on success, skip them (transitively) otherwise.
create function ops.settle_dependants(p_run uuid, p_key text, p_status text) returns void
language plpgsql security definer
set search_path = ''
as $$
begin
    if p_status = 'succeeded' then
        update ops.tasks t
        set pending_deps = t.pending_deps - 1,
            status = case when t.pending_deps = 1 then 'queued' else t.status end
        where t.run_id = p_run and p_key = any(t.depends_on) and t.status = 'pending';
    elsif p_status in ('failed', 'lost', 'timed_out', 'cancelled', 'skipped') then
        with recursive downstream(key) as (
            select t.key from ops.tasks t where t.run_id = p_run and p_key = any(t.depends_on)
            union
            select t.key from ops.tasks t join downstream d on d.key = any(t.depends_on) where t.run_id = p_run
        )
        update ops.tasks t
        set status = 'skipped', finished_at = now(),
            error = format('not run: upstream task "%s" ended %s', p_key, p_status)
        where t.run_id = p_run and t.key in (select key from downstream) and t.status = 'pending';
    end if;
end;
$$;

-- Claim -----------------------------------------------------------------------------------------

create function ops.claim_tasks(
    p_executor uuid,
    p_engines text[] default null,
    p_labels text[] default null,
    p_max integer default 1,
    p_lease_seconds integer default 60
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
begin
    select * into v_exec from ops.executors e where e.id = p_executor;
    if not found then
        raise exception using errcode = 'LH404', column = 'executor', message = format('executor %s is not registered', p_executor);
    end if;
    if v_exec.token_revoked_at is not null or v_exec.status = 'revoked' then
        raise exception using errcode = 'LH403', message = format('executor %s has been revoked', v_exec.name);
    end if;
    if v_exec.drain_requested then
        return;
    end if;
    v_engines := coalesce(p_engines, v_exec.engines);
    v_labels := coalesce(p_labels, v_exec.labels);
    select least(greatest(p_max, 0), 1000, v_exec.max_concurrency - count(*)) into v_max
    from ops.tasks t where t.executor_id = p_executor and t.status in ('claimed', 'running');
    if v_max <= 0 then
        return;
    end if;

    if not exists (select 1 from ops.caps c where c.enabled and c.kind in ('concurrent_tasks', 'compute_seconds_per_day')) then
        -- Fast path: one statement picks, leases and records attempts.
        with picked as (
            select t.id from ops.tasks t
            where t.status = 'queued' and t.pool = v_exec.pool and t.engine = any(v_engines)
              and t.required_labels <@ v_labels and t.not_before <= now()
            order by t.priority desc, t.queued_at
            limit v_max
            for update skip locked
        ), leased as (
            update ops.tasks t
            set status = 'claimed', attempt = t.attempt + 1, lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                executor_id = p_executor, claimed_at = now(), started_at = null
            from picked where t.id = picked.id
            returning t.id, t.attempt, t.run_id, t.lease_token, t.claimed_at
        ), attempts as (
            insert into ops.task_attempts (task_id, attempt, run_id, executor_id, lease_token, claimed_at)
            select l.id, l.attempt, l.run_id, p_executor, l.lease_token, l.claimed_at from leased l
        )
        select coalesce(array_agg(l.id), '{}'), array_agg(distinct l.run_id) into v_ids, v_runs from leased l;
    else
        -- Caps path: check each candidate against the concurrency and compute caps that apply,
        -- holding those cap rows locked (in id order) so concurrent claimers count one at a time.
        for v_cand in
            select t.* from ops.tasks t
            where t.status = 'queued' and t.pool = v_exec.pool and t.engine = any(v_engines)
              and t.required_labels <@ v_labels and t.not_before <= now()
            order by t.priority desc, t.queued_at
            limit greatest(v_max * 4, 32)
            for update skip locked
        loop
            exit when cardinality(v_ids) >= v_max;
            v_ok := true;
            v_counts := '{}';
            for v_cap in
                select c.* from ops.caps c
                where c.enabled and c.kind in ('concurrent_tasks', 'compute_seconds_per_day') and ops.cap_applies(c, v_cand)
                order by c.id
                for update
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
                executor_id = p_executor, claimed_at = now(), started_at = null
            where t.id = v_cand.id;
            insert into ops.task_attempts (task_id, attempt, run_id, executor_id, lease_token, claimed_at)
            values (v_cand.id, v_cand.attempt + 1, v_cand.run_id, p_executor, v_lease, now());
            insert into ops.cap_usage as u (cap_id, day, peak_concurrency)
            select k::uuid, ops.utc_today(), v::integer from jsonb_each_text(v_counts) as kv(k, v)
            on conflict (cap_id, day) do update
                set peak_concurrency = greatest(u.peak_concurrency, excluded.peak_concurrency), updated_at = now();
            v_ids := v_ids || v_cand.id;
        end loop;
        v_runs := array(select distinct t.run_id from ops.tasks t where t.id = any(v_ids));
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

-- Heartbeat: extend the lease; claimed becomes running; carries back a cancel request.
create function ops.extend_lease(p_task uuid, p_lease uuid, p_lease_seconds integer default 60)
returns table (lease_expires_at timestamptz, cancel_requested boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_expires timestamptz;
    v_cancel boolean;
begin
    update ops.tasks t
    set lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        status = 'running',
        started_at = coalesce(t.started_at, now())
    where t.id = p_task and t.lease_token = p_lease and t.status in ('claimed', 'running')
    returning t.lease_expires_at, t.cancel_requested into v_expires, v_cancel;
    if not found then
        raise exception using errcode = 'LH409',
            message = format('lease lost: task %s is no longer held by this lease (expired, reaped or finalized)', p_task),
            hint = 'stop working on the task; its outcome will not be recorded';
    end if;
    update ops.task_attempts a set started_at = coalesce(a.started_at, now())
    where a.task_id = p_task and a.lease_token = p_lease and a.started_at is null;
    return query select v_expires, v_cancel;
end;
$$;

-- Events: idempotent on (task, attempt, seq). Accepted for any attempt this lease held, so a
-- late flush after finalize is stored, and a re-send is not doubled.
create function ops.append_events(p_task uuid, p_lease uuid, p_events jsonb)
returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_attempt integer;
    v_run uuid;
    v_inserted integer;
begin
    select a.attempt, a.run_id into v_attempt, v_run
    from ops.task_attempts a where a.task_id = p_task and a.lease_token = p_lease;
    if not found then
        raise exception using errcode = 'LH409',
            message = format('lease token does not belong to task %s', p_task);
    end if;
    if jsonb_typeof(p_events) is distinct from 'array' then
        perform ops.invalid('events', 'must be an array of events');
    end if;
    -- One writer per run at a time, so a run's event ids commit in increasing order and a
    -- reader resuming "after id N" (SSE Last-Event-ID) can never miss a later-committed lower id.
    perform pg_advisory_xact_lock(hashtextextended(v_run::text, 42));
    insert into ops.events (run_id, task_id, attempt, seq, ts, type, level, message, data)
    select v_run, p_task, v_attempt, (e ->> 'seq')::integer, coalesce((e ->> 'ts')::timestamptz, now()),
           coalesce(e ->> 'type', 'log'), coalesce(e ->> 'level', 'info'), coalesce(e ->> 'message', ''),
           coalesce(e -> 'data', '{}'::jsonb)
    from jsonb_array_elements(p_events) e
    order by (e ->> 'seq')::integer
    on conflict (task_id, attempt, seq) do nothing;
    get diagnostics v_inserted = row_count;
    update ops.tasks t set status = 'running', started_at = coalesce(t.started_at, now())
    where t.id = p_task and t.lease_token = p_lease and t.status = 'claimed';
    if v_inserted > 0 then
        perform pg_notify('lakehouse_events', v_run::text);
    end if;
    return v_inserted;
end;
$$;

-- Finalize: idempotent for the same lease and outcome; a stale lease or a different outcome for
-- an attempt already ended is a conflict and changes nothing.
-- p_refresh_run = false leaves the run's status to the caller (batch finalize refreshes each run once).
create function ops.finalize_task(
    p_task uuid, p_lease uuid, p_outcome text, p_result jsonb default null, p_error text default null,
    p_refresh_run boolean default true
) returns table (task_status text, run_status text, replayed boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_task ops.tasks;
    v_attempt ops.task_attempts;
    v_status text;
    v_backoff double precision;
begin
    if p_outcome is null or p_outcome not in ('succeeded', 'failed', 'cancelled', 'timed_out') then
        perform ops.invalid('outcome', 'must be one of succeeded, failed, cancelled, timed_out');
    end if;
    select * into v_task from ops.tasks t where t.id = p_task for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'task_id', message = format('task %s does not exist', p_task);
    end if;
    select * into v_attempt from ops.task_attempts a where a.task_id = p_task and a.lease_token = p_lease;
    if not found then
        raise exception using errcode = 'LH409', message = format('lease token does not belong to task %s', p_task);
    end if;
    if v_attempt.outcome is not null then
        if v_attempt.outcome = p_outcome then
            return query select v_task.status, (select r.status from ops.runs r where r.id = v_task.run_id), true;
            return;
        end if;
        if v_attempt.outcome = 'lost' then
            raise exception using errcode = 'LH409',
                message = format('lease lost: attempt %s of task %s expired and was reaped; its outcome is not recorded',
                                 v_attempt.attempt, p_task);
        end if;
        raise exception using errcode = 'LH409',
            message = format('task %s attempt %s already ended %s; it cannot be finalized %s',
                             p_task, v_attempt.attempt, v_attempt.outcome, p_outcome);
    end if;
    if v_task.lease_token is distinct from p_lease or v_task.status not in ('claimed', 'running') then
        raise exception using errcode = 'LH409',
            message = format('lease lost: task %s is no longer held by this lease', p_task);
    end if;

    update ops.task_attempts a
    set outcome = p_outcome, finished_at = now(), result = p_result, error = p_error,
        started_at = coalesce(a.started_at, a.claimed_at)
    where a.task_id = p_task and a.attempt = v_attempt.attempt;

    if p_outcome = 'failed' and v_task.attempt < v_task.max_attempts and not v_task.cancel_requested
       and coalesce((p_result ->> 'retryable')::boolean, true) then
        v_backoff := v_task.retry_backoff_s * power(2, v_task.attempt - 1) * (1 + random() * 0.1);
        update ops.tasks t
        set status = 'queued', lease_token = null, lease_expires_at = null, executor_id = null,
            error = p_error, result = p_result,
            not_before = now() + make_interval(secs => least(v_backoff, 86400))
        where t.id = p_task
        returning * into v_task;
    else
        update ops.tasks t
        set status = p_outcome, lease_token = null, lease_expires_at = null, finished_at = now(),
            started_at = coalesce(t.started_at, t.claimed_at), result = p_result, error = p_error
        where t.id = p_task
        returning * into v_task;
        perform ops.settle_dependants(v_task.run_id, v_task.key, p_outcome);
        perform ops.record_task_usage(v_task, p_outcome);
    end if;
    if p_refresh_run then
        v_status := ops.refresh_run_status(v_task.run_id);
    end if;
    return query select v_task.status, v_status, false;
end;
$$;

-- Reaper: expired leases are requeued with backoff, or end `lost` after max_attempts.
create function ops.requeue_expired() returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_task ops.tasks;
    v_n integer := 0;
    v_final text;
begin
    for v_task in
        select t.* from ops.tasks t
        where t.status in ('claimed', 'running') and t.lease_expires_at < now()
        order by t.lease_expires_at
        limit 1000
        for update skip locked
    loop
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
        perform ops.refresh_run_status(v_task.run_id);
        v_n := v_n + 1;
    end loop;
    return v_n;
end;
$$;

-- Cancel: waiting tasks end at once; leased ones are asked to stop through their heartbeat.
create function ops.cancel_run(p_run uuid, p_by text default null) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_run ops.runs;
begin
    select * into v_run from ops.runs r where r.id = p_run for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'run_id', message = format('run %s does not exist', p_run);
    end if;
    perform ops.require_project_role(v_run.project_id, 'operator');
    if v_run.status in ('succeeded', 'failed', 'cancelled') then
        return v_run.status;
    end if;
    update ops.runs r
    set cancel_requested_at = coalesce(r.cancel_requested_at, now()),
        cancel_requested_by = coalesce(r.cancel_requested_by, p_by, auth.uid()::text, session_user::text)
    where r.id = p_run;
    update ops.tasks t set status = 'cancelled', finished_at = now(), error = 'cancelled before it started'
    where t.run_id = p_run and t.status in ('pending', 'queued');
    update ops.tasks t set cancel_requested = true
    where t.run_id = p_run and t.status in ('claimed', 'running');
    return ops.refresh_run_status(p_run);
end;
$$;
