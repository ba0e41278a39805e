-- Model serving endpoints (issue 23 item 5).
--
-- An endpoint serves one or two MLflow model versions with a traffic split. Each version runs as N
-- replicas; a replica is a long-running **service task**: a run of one `serving` task that runs
-- `mlflow models serve` until it is cancelled. The task lifecycle is the usual one (claim, lease,
-- heartbeats, finalize): a replica whose process dies fails its attempt and is retried by the task's
-- own retry policy; one that ends for good (attempts used up, lost) is started again as a new run by
-- ops.restart_serving_replicas, which the control room's serving loop calls (exactly once across
-- control-room processes: the new run's idempotency key names the replica and its restart number).
-- The agent reports the replica's address under its lease (ops.report_serving_replica); the proxy
-- sends requests only to replicas whose current attempt reported an address and holds a live lease.
--
-- Caps: a `concurrent_tasks` cap scoped to engine `serving` bounds the org's replicas (checked when an
-- endpoint asks for more, and by the claim as for any task); `max_memory_mb` caps apply to the serving
-- process's rlimits like any task's.
--
-- DESIGN decision 7: org_id on every row, RLS with read policies for the project's members;
-- `authenticated` gets SELECT only (token hashes never); writes go through the SECURITY DEFINER
-- functions below, which check the caller's project role (operators manage endpoints).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.serving_endpoints (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    environment_id uuid not null references ops.environments(id) on delete cascade,
    name text not null check (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    status text not null default 'running' check (status in ('running', 'stopped')),
    replicas integer not null check (replicas between 1 and 16),
    pool text check (pool ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    max_memory_mb integer check (max_memory_mb >= 64),
    revision integer not null default 1,
    created_by text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    stopped_at timestamptz,
    unique (project_id, name)
);
create index serving_endpoints_org on ops.serving_endpoints (org_id);

-- Every traffic split the endpoint had, in order: rolling back applies an earlier one as a new revision.
create table ops.serving_endpoint_revisions (
    endpoint_id uuid not null references ops.serving_endpoints(id) on delete cascade,
    revision integer not null check (revision >= 1),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    routes jsonb not null,
    action text not null check (action in ('create', 'canary', 'promote', 'rollback', 'update', 'start')),
    created_by text not null,
    created_at timestamptz not null default now(),
    primary key (endpoint_id, revision)
);
create index serving_endpoint_revisions_org on ops.serving_endpoint_revisions (org_id);

create table ops.serving_replicas (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    endpoint_id uuid not null references ops.serving_endpoints(id) on delete cascade,
    model_name text not null,
    model_version text not null,
    replica_index integer not null check (replica_index >= 0),
    run_id uuid not null references ops.runs(id) on delete cascade,
    task_id uuid not null references ops.tasks(id) on delete cascade,
    restarts integer not null default 0,
    address text,
    address_attempt integer,
    pid integer,
    reported_at timestamptz,
    created_at timestamptz not null default now(),
    retired_at timestamptz
);
create index serving_replicas_endpoint on ops.serving_replicas (endpoint_id) where retired_at is null;
create index serving_replicas_task on ops.serving_replicas (task_id);
create index serving_replicas_org on ops.serving_replicas (org_id);

-- Per-endpoint bearer tokens (lhe_…) for the invocations proxy; stored hashed, shown once.
create table ops.serving_tokens (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    endpoint_id uuid not null references ops.serving_endpoints(id) on delete cascade,
    name text not null check (length(name) between 1 and 100),
    token_prefix text not null,
    token_hash text not null unique,
    created_by text not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    unique (endpoint_id, name)
);
create index serving_tokens_org on ops.serving_tokens (org_id);

-- What the proxy saw, per endpoint, model version and 10-second bucket: requests, errors and a
-- latency histogram (bounds in ms: ops.serving_latency_bounds()), so p50/p95 can be read back.
create table ops.serving_request_stats (
    endpoint_id uuid not null references ops.serving_endpoints(id) on delete cascade,
    bucket_start timestamptz not null,
    model_version text not null,
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    requests bigint not null default 0,
    errors bigint not null default 0,
    latency_ms_sum double precision not null default 0,
    latency_hist bigint[] not null,
    primary key (endpoint_id, bucket_start, model_version)
);
create index serving_request_stats_org on ops.serving_request_stats (org_id);

alter table ops.serving_endpoints enable row level security;
alter table ops.serving_endpoint_revisions enable row level security;
alter table ops.serving_replicas enable row level security;
alter table ops.serving_tokens enable row level security;
alter table ops.serving_request_stats enable row level security;

create policy serving_endpoints_read on ops.serving_endpoints for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy serving_endpoint_revisions_read on ops.serving_endpoint_revisions for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy serving_replicas_read on ops.serving_replicas for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy serving_tokens_read on ops.serving_tokens for select to authenticated
    using (ops.has_project_role(project_id, 'operator'));
create policy serving_request_stats_read on ops.serving_request_stats for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));

grant select on ops.serving_endpoints, ops.serving_endpoint_revisions, ops.serving_replicas,
    ops.serving_request_stats to authenticated;
grant select (id, org_id, project_id, endpoint_id, name, token_prefix, created_by, created_at, last_used_at,
              revoked_at) on ops.serving_tokens to authenticated;

-- Revisions are history.
create function ops.forbid_serving_revision_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception using errcode = 'LH409', message = 'endpoint revisions are immutable; apply a new one';
end;
$$;
create trigger serving_endpoint_revisions_immutable before update on ops.serving_endpoint_revisions
    for each row execute function ops.forbid_serving_revision_change();

create function ops.serving_latency_bounds() returns double precision[]
language sql immutable
set search_path = ''
as $$ select array[1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000,
                   10000]::double precision[] $$;

-- A traffic split: 1 or 2 routes {model, version, percent}, distinct versions, percents summing to 100.
create function ops.check_serving_routes(p_routes jsonb) returns void
language plpgsql immutable
set search_path = ''
as $$
declare
    v_route jsonb;
    v_sum integer := 0;
begin
    if jsonb_typeof(p_routes) is distinct from 'array' or jsonb_array_length(p_routes) not between 1 and 2 then
        perform ops.invalid('routes', 'an endpoint serves one or two model versions');
    end if;
    for v_route in select * from jsonb_array_elements(p_routes) loop
        if coalesce(v_route ->> 'model', '') = '' or length(v_route ->> 'model') > 256 then
            perform ops.invalid('model', 'model name must be 1 to 256 characters');
        end if;
        if coalesce(v_route ->> 'version', '') !~ '^[1-9][0-9]{0,9}$' then
            perform ops.invalid('version', format('model version must be a positive number, got %s', v_route ->> 'version'));
        end if;
        if jsonb_typeof(v_route -> 'percent') is distinct from 'number'
           or (v_route ->> 'percent')::numeric not between 0 and 100
           or (v_route ->> 'percent')::numeric <> trunc((v_route ->> 'percent')::numeric) then
            perform ops.invalid('percent', 'traffic percent must be a whole number from 0 to 100');
        end if;
        v_sum := v_sum + (v_route ->> 'percent')::integer;
    end loop;
    if v_sum <> 100 then
        perform ops.invalid('percent', format('traffic percents must add up to 100, got %s', v_sum));
    end if;
    if jsonb_array_length(p_routes) = 2
       and (p_routes -> 0 ->> 'model') = (p_routes -> 1 ->> 'model')
       and (p_routes -> 0 ->> 'version') = (p_routes -> 1 ->> 'version') then
        perform ops.invalid('version', 'the two routes must serve different model versions');
    end if;
end;
$$;

-- Refuse more replicas than a concurrent_tasks cap on engine `serving` allows the org.
create function ops.check_serving_replica_cap(p_org uuid, p_more integer) returns void
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_cap ops.caps;
    v_used integer;
begin
    select count(*) into v_used from ops.serving_replicas r where r.org_id = p_org and r.retired_at is null;
    for v_cap in
        select c.* from ops.caps c
        where c.org_id = p_org and c.enabled and c.kind = 'concurrent_tasks' and c.scope = 'engine'
          and c.engine = 'serving'
        order by c.id
    loop
        if v_used + p_more > v_cap.limit_value then
            raise exception using errcode = 'LH429', column = 'replicas',
                message = format('cap "%s" allows %s serving replicas in the org; %s run now and %s more were asked for: '
                                 'stop an endpoint, use fewer replicas or raise the cap',
                                 v_cap.name, v_cap.limit_value, v_used, p_more);
        end if;
    end loop;
end;
$$;

-- Start one replica's service task (a run of one `serving` task) and return its run id.
create function ops.start_serving_run(e ops.serving_endpoints, p_model text, p_version text, p_index integer,
                                      p_restart integer, p_replica uuid)
returns table (run_id uuid, task_id uuid)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_env text;
    v_spec jsonb;
    v_run uuid;
    v_refusal text;
begin
    select x.name into v_env from ops.environments x where x.id = e.environment_id;
    v_spec := jsonb_build_object(
        'name', format('serving %s: %s v%s #%s', e.name, p_model, p_version, p_index),
        'tasks', jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'key', 'serve', 'engine', 'serving', 'endpoint', e.name,
            'model_uri', format('models:/%s/%s', p_model, p_version),
            'max_attempts', 3, 'retry_backoff_s', 1, 'pool', e.pool, 'max_memory_mb', e.max_memory_mb,
            'description', format('replica %s of endpoint %s serving %s version %s', p_index, e.name, p_model, p_version)
        ))));
    select s.run_id, s.refusal into v_run, v_refusal
    from ops.submit_run(e.project_id, v_env, v_spec, '{}'::jsonb, 'api', null, 'serving',
                        format('serving:%s:%s', p_replica, p_restart), 0,
                        array['serving', 'endpoint:' || e.name]) s;
    if v_run is null then
        raise exception using errcode = 'LH429', message = coalesce(v_refusal, 'the replica could not be started');
    end if;
    return query select v_run, (select t.id from ops.tasks t where t.run_id = v_run and t.key = 'serve');
end;
$$;

-- Make the endpoint's live replicas match its routes: start missing ones, retire (cancel) the rest.
create function ops.reconcile_serving_replicas(p_endpoint uuid) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    e ops.serving_endpoints;
    v_routes jsonb;
    v_route jsonb;
    v_index integer;
    v_id uuid;
    v_run uuid;
    v_task uuid;
    v_retired uuid;
begin
    select * into e from ops.serving_endpoints x where x.id = p_endpoint for update;
    select r.routes into v_routes from ops.serving_endpoint_revisions r
    where r.endpoint_id = e.id and r.revision = e.revision;
    -- Retire replicas of versions no longer routed (or all of them when stopped), and extra ones.
    for v_retired in
        update ops.serving_replicas r set retired_at = now()
        where r.endpoint_id = e.id and r.retired_at is null
          and (e.status = 'stopped' or r.replica_index >= e.replicas
               or not exists (select 1 from jsonb_array_elements(v_routes) x
                              where x ->> 'model' = r.model_name and x ->> 'version' = r.model_version))
        returning r.run_id
    loop
        perform ops.cancel_run(v_retired, 'serving endpoint ' || e.name);
    end loop;
    if e.status = 'stopped' then
        return;
    end if;
    for v_route in select * from jsonb_array_elements(v_routes) loop
        for v_index in 0 .. e.replicas - 1 loop
            continue when exists (select 1 from ops.serving_replicas r
                                  where r.endpoint_id = e.id and r.retired_at is null and r.replica_index = v_index
                                    and r.model_name = v_route ->> 'model' and r.model_version = v_route ->> 'version');
            perform ops.check_serving_replica_cap(e.org_id, 1);
            v_id := gen_random_uuid();
            select s.run_id, s.task_id into v_run, v_task
            from ops.start_serving_run(e, v_route ->> 'model', v_route ->> 'version', v_index, 0, v_id) s;
            insert into ops.serving_replicas (id, org_id, project_id, endpoint_id, model_name, model_version,
                                              replica_index, run_id, task_id)
            values (v_id, e.org_id, e.project_id, e.id, v_route ->> 'model', v_route ->> 'version', v_index, v_run,
                    v_task);
        end loop;
    end loop;
end;
$$;

create function ops.create_serving_endpoint(
    p_project uuid,
    p_environment text,
    p_name text,
    p_model text,
    p_version text,
    p_replicas integer default 1,
    p_pool text default null,
    p_max_memory_mb integer default null,
    p_by text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_org uuid;
    v_env uuid;
    v_id uuid;
    v_by text := ops.ui_actor(p_by);
    v_routes jsonb := jsonb_build_array(jsonb_build_object('model', p_model, 'version', p_version, 'percent', 100));
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'operator');
    if p_name is null or p_name !~ '^[a-z0-9][a-z0-9-]{0,62}$' then
        perform ops.invalid('name', 'must be lower-case letters, digits and dashes (at most 63), starting with a letter or digit');
    end if;
    if p_replicas is null or p_replicas not between 1 and 16 then
        perform ops.invalid('replicas', 'replicas per version must be 1 to 16');
    end if;
    perform ops.check_serving_routes(v_routes);
    select x.id into v_env from ops.environments x where x.project_id = p_project and x.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project', p_environment));
    end if;
    if exists (select 1 from ops.serving_endpoints x where x.project_id = p_project and x.name = p_name) then
        raise exception using errcode = 'LH423', column = 'name',
            message = format('endpoint "%s" already exists in this project; update it or pick another name', p_name);
    end if;
    perform ops.check_serving_replica_cap(v_org, p_replicas);
    insert into ops.serving_endpoints (org_id, project_id, environment_id, name, replicas, pool, max_memory_mb,
                                       created_by)
    values (v_org, p_project, v_env, p_name, p_replicas, p_pool, p_max_memory_mb, v_by)
    returning id into v_id;
    insert into ops.serving_endpoint_revisions (endpoint_id, revision, org_id, project_id, routes, action, created_by)
    values (v_id, 1, v_org, p_project, v_routes, 'create', v_by);
    perform ops.reconcile_serving_replicas(v_id);
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'serving_endpoints', v_id, p_project, 'create',
            jsonb_build_object('name', p_name, 'routes', v_routes, 'replicas', p_replicas));
    return v_id;
end;
$$;

-- Apply a new traffic split (canary, promote, rollback, update) or start/stop the endpoint.
-- p_expected_revision guards against applying over a change someone made meanwhile (null: no check).
create function ops.update_serving_endpoint(
    p_endpoint uuid,
    p_action text,
    p_routes jsonb default null,
    p_replicas integer default null,
    p_expected_revision integer default null,
    p_by text default null
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    e ops.serving_endpoints;
    v_by text := ops.ui_actor(p_by);
    v_old jsonb;
    v_revision integer;
    v_more integer;
begin
    select * into e from ops.serving_endpoints x where x.id = p_endpoint for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'endpoint', message = format('endpoint %s does not exist', p_endpoint);
    end if;
    perform ops.require_project_role(e.project_id, 'operator');
    if p_action not in ('canary', 'promote', 'rollback', 'update', 'start', 'stop') then
        perform ops.invalid('action', 'must be canary, promote, rollback, update, start or stop');
    end if;
    if p_expected_revision is not null and p_expected_revision <> e.revision then
        raise exception using errcode = 'LH423', column = 'revision',
            message = format('endpoint "%s" is at revision %s now (you changed revision %s); reload and try again',
                             e.name, e.revision, p_expected_revision);
    end if;
    if p_replicas is not null and p_replicas not between 1 and 16 then
        perform ops.invalid('replicas', 'replicas per version must be 1 to 16');
    end if;
    select r.routes into v_old from ops.serving_endpoint_revisions r where r.endpoint_id = e.id and r.revision = e.revision;
    v_revision := e.revision;
    if p_action = 'stop' then
        update ops.serving_endpoints x set status = 'stopped', stopped_at = now(), updated_at = now() where x.id = e.id;
    else
        if e.status = 'stopped' and p_action <> 'start' then
            perform ops.invalid('action', format('endpoint "%s" is stopped; start it first', e.name));
        end if;
        v_more := (coalesce(p_replicas, e.replicas) * jsonb_array_length(coalesce(p_routes, v_old)))
                  - (select count(*) from ops.serving_replicas r where r.endpoint_id = e.id and r.retired_at is null);
        if v_more > 0 then
            perform ops.check_serving_replica_cap(e.org_id, v_more);
        end if;
        if p_routes is not null then
            perform ops.check_serving_routes(p_routes);
            v_revision := e.revision + 1;
            insert into ops.serving_endpoint_revisions (endpoint_id, revision, org_id, project_id, routes, action,
                                                         created_by)
            values (e.id, v_revision, e.org_id, e.project_id, p_routes, p_action, v_by);
        end if;
        update ops.serving_endpoints x
        set revision = v_revision, status = 'running', stopped_at = null, replicas = coalesce(p_replicas, x.replicas),
            updated_at = now()
        where x.id = e.id;
    end if;
    perform ops.reconcile_serving_replicas(e.id);
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status, detail)
    values (v_by, 'serving_endpoints', e.id, e.project_id, p_action, e.revision::text, v_revision::text,
            jsonb_strip_nulls(jsonb_build_object('name', e.name, 'from', v_old, 'routes', p_routes,
                                                 'replicas', p_replicas)));
    return v_revision;
end;
$$;

-- The agent reports where a replica listens, under the task's lease (a stale lease gets 409).
create function ops.report_serving_replica(p_task uuid, p_lease uuid, p_address text, p_pid integer)
returns table (endpoint text, model_name text, model_version text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_task ops.tasks;
begin
    select * into v_task from ops.tasks t where t.id = p_task;
    if not found then
        raise exception using errcode = 'LH404', column = 'task_id', message = format('task %s does not exist', p_task);
    end if;
    if v_task.lease_token is distinct from p_lease or v_task.status not in ('claimed', 'running') then
        raise exception using errcode = 'LH409', message = format('lease lost: task %s is no longer held by this lease', p_task);
    end if;
    if p_address is null or p_address !~ '^[A-Za-z0-9.:\[\]-]{1,200}:[0-9]{1,5}$' then
        perform ops.invalid('address', 'must be host:port');
    end if;
    update ops.tasks t set status = 'running', started_at = coalesce(t.started_at, now())
    where t.id = p_task and t.status = 'claimed';
    return query
    update ops.serving_replicas r
    set address = p_address, address_attempt = v_task.attempt, pid = p_pid, reported_at = now()
    from ops.serving_endpoints e
    where r.task_id = p_task and e.id = r.endpoint_id
    returning e.name, r.model_name, r.model_version;
    if not found then
        raise exception using errcode = 'LH404', column = 'task_id',
            message = format('task %s is not a replica of a serving endpoint', p_task);
    end if;
end;
$$;

-- The restart policy: a live replica whose task ended for good (failed after its attempts, lost,
-- timed out, or cancelled by someone else) gets a new run. Exactly once across control-room
-- processes: replicas are locked (skip locked) and the run's idempotency key names the restart.
create function ops.restart_serving_replicas(p_limit integer default 100) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_replica ops.serving_replicas;
    e ops.serving_endpoints;
    v_run uuid;
    v_task uuid;
    v_n integer := 0;
begin
    for v_replica in
        select r.* from ops.serving_replicas r
        join ops.tasks t on t.id = r.task_id
        join ops.serving_endpoints x on x.id = r.endpoint_id
        where r.retired_at is null and x.status = 'running'
          and t.status in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost')
        order by r.id
        limit p_limit
        for update of r skip locked
    loop
        select * into e from ops.serving_endpoints x where x.id = v_replica.endpoint_id;
        select s.run_id, s.task_id into v_run, v_task
        from ops.start_serving_run(e, v_replica.model_name, v_replica.model_version, v_replica.replica_index,
                                   v_replica.restarts + 1, v_replica.id) s;
        update ops.serving_replicas r
        set run_id = v_run, task_id = v_task, restarts = r.restarts + 1, address = null, address_attempt = null,
            pid = null, reported_at = null
        where r.id = v_replica.id;
        v_n := v_n + 1;
    end loop;
    return v_n;
end;
$$;

-- Tokens of an endpoint (operators create and revoke; the hash is computed by the API).
create function ops.create_serving_token(p_endpoint uuid, p_name text, p_prefix text, p_hash text,
                                         p_by text default null)
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    e ops.serving_endpoints;
    v_id uuid;
    v_by text := ops.ui_actor(p_by);
begin
    select * into e from ops.serving_endpoints x where x.id = p_endpoint;
    if not found then
        raise exception using errcode = 'LH404', column = 'endpoint', message = format('endpoint %s does not exist', p_endpoint);
    end if;
    perform ops.require_project_role(e.project_id, 'operator');
    if exists (select 1 from ops.serving_tokens t where t.endpoint_id = e.id and t.name = p_name) then
        raise exception using errcode = 'LH423', column = 'name',
            message = format('endpoint "%s" already has a token named "%s"', e.name, p_name);
    end if;
    insert into ops.serving_tokens (org_id, project_id, endpoint_id, name, token_prefix, token_hash, created_by)
    values (e.org_id, e.project_id, e.id, p_name, p_prefix, p_hash, v_by)
    returning id into v_id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'serving_endpoints', e.id, e.project_id, 'token_create', jsonb_build_object('token', p_name));
    return v_id;
end;
$$;

create function ops.revoke_serving_token(p_endpoint uuid, p_name text, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    e ops.serving_endpoints;
    v_by text := ops.ui_actor(p_by);
begin
    select * into e from ops.serving_endpoints x where x.id = p_endpoint;
    if not found then
        raise exception using errcode = 'LH404', column = 'endpoint', message = format('endpoint %s does not exist', p_endpoint);
    end if;
    perform ops.require_project_role(e.project_id, 'operator');
    update ops.serving_tokens t set revoked_at = coalesce(t.revoked_at, now())
    where t.endpoint_id = e.id and t.name = p_name;
    if not found then
        raise exception using errcode = 'LH404', column = 'name',
            message = format('endpoint "%s" has no token named "%s"', e.name, p_name);
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'serving_endpoints', e.id, e.project_id, 'token_revoke', jsonb_build_object('token', p_name));
end;
$$;

-- The proxy's counters, added to the bucket (trusted callers only: the API server).
create function ops.record_serving_requests(p_endpoint uuid, p_bucket timestamptz, p_version text,
                                            p_requests bigint, p_errors bigint, p_latency_sum double precision,
                                            p_hist bigint[])
returns void
language sql security definer
set search_path = ''
as $$
    insert into ops.serving_request_stats as s (endpoint_id, bucket_start, model_version, org_id, project_id,
                                                requests, errors, latency_ms_sum, latency_hist)
    select e.id, p_bucket, p_version, e.org_id, e.project_id, p_requests, p_errors, p_latency_sum, p_hist
    from ops.serving_endpoints e where e.id = p_endpoint
    on conflict (endpoint_id, bucket_start, model_version) do update
    set requests = s.requests + excluded.requests, errors = s.errors + excluded.errors,
        latency_ms_sum = s.latency_ms_sum + excluded.latency_ms_sum,
        latency_hist = array(select coalesce(a, 0) + coalesce(b, 0)
                             from unnest(s.latency_hist, excluded.latency_hist) as u(a, b))
$$;

revoke execute on function ops.start_serving_run(ops.serving_endpoints, text, text, integer, integer, uuid) from public;
revoke execute on function ops.reconcile_serving_replicas(uuid) from public;
revoke execute on function ops.report_serving_replica(uuid, uuid, text, integer) from public;
revoke execute on function ops.restart_serving_replicas(integer) from public;
revoke execute on function ops.record_serving_requests(uuid, timestamptz, text, bigint, bigint, double precision, bigint[])
    from public;
revoke execute on function ops.check_serving_replica_cap(uuid, integer) from public;
grant execute on function ops.create_serving_endpoint(uuid, text, text, text, text, integer, text, integer, text)
    to authenticated, service_role;
grant execute on function ops.update_serving_endpoint(uuid, text, jsonb, integer, integer, text)
    to authenticated, service_role;
grant execute on function ops.create_serving_token(uuid, text, text, text, text) to authenticated, service_role;
grant execute on function ops.revoke_serving_token(uuid, text, text) to authenticated, service_role;
grant execute on function ops.serving_latency_bounds() to authenticated, service_role;
