-- Job management: runs started from job template versions, the scheduler's fires (exactly once
-- per schedule and fire time, whatever the number of control-room replicas) and backfills.
--
-- A run records its template, version, schedule and backfill (immutable like its spec). Which
-- version a template run uses is decided in one place, ops.resolve_template_version: today the
-- requested version or the latest; promotion gates (issue 18) redefine it so that an environment
-- runs its deployed version.
--
-- RLS (DESIGN decision 7): every new table carries org_id (backfill_intervals through its
-- backfill), `authenticated` may SELECT only, and writes go through the SECURITY DEFINER functions
-- below, which check the caller's project role.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- Runs know where they come from ----------------------------------------------------------------

-- schedule_id and backfill_id carry no foreign key: removing a schedule from the bundle deletes
-- its row, and the runs it started keep their history.
alter table ops.runs
    add column template_id uuid references ops.job_templates (id),
    add column template_version_id uuid references ops.job_template_versions (id),
    add column schedule_id uuid,
    add column backfill_id uuid;

create index runs_template_created on ops.runs (template_id, created_at desc, id desc) where template_id is not null;
create index runs_schedule_active on ops.runs (schedule_id)
    where schedule_id is not null and status in ('queued', 'running');
create index runs_backfill on ops.runs (backfill_id) where backfill_id is not null;

create function ops.guard_run_origin() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.template_id is distinct from old.template_id
       or new.template_version_id is distinct from old.template_version_id
       or new.schedule_id is distinct from old.schedule_id
       or new.backfill_id is distinct from old.backfill_id then
        raise exception using
            errcode = 'LH423',
            message = format('run %s: template, version, schedule and backfill are immutable', old.id),
            hint = 'submit a new run instead of editing it';
    end if;
    return new;
end;
$$;

create trigger runs_origin_immutable before update of template_id, template_version_id, schedule_id, backfill_id
    on ops.runs for each row execute function ops.guard_run_origin();

-- ops.submit_run gains the run's origin (optional; every earlier call keeps working) ------------

drop function ops.submit_run(uuid, text, jsonb, jsonb, text, uuid, text, text, integer, text[], uuid);

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
            return query select null::uuid, false, format(
                'cap "%s" (runs_per_day = %s, %s scope) is reached: %s runs today; try tomorrow or raise the cap',
                v_cap.name, v_cap.limit_value, v_cap.scope, coalesce(v_used, 0));
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

-- Template runs -----------------------------------------------------------------------------------

-- The version a run of the template in the environment uses: the requested one, else the latest.
-- Promotion gates (issue 18) replace this function so that a pinned environment gets its deployed
-- version (and refuses others); every template run, scheduled fire and backfill goes through it.
create function ops.resolve_template_version(p_template uuid, p_environment uuid, p_version integer default null)
returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    if p_version is null then
        select v.id into v_id from ops.job_template_versions v
        where v.template_id = p_template order by v.version desc limit 1;
    else
        select v.id into v_id from ops.job_template_versions v
        where v.template_id = p_template and v.version = p_version;
    end if;
    if v_id is null then
        raise exception using errcode = 'LH404', column = 'version',
            message = format('job template %s has no version %s', p_template, coalesce(p_version::text, '(any)'));
    end if;
    return v_id;
end;
$$;

-- A run spec from a version: each task's engine config is flattened into the task (as in a
-- submitted spec) and the version's retries and timeout apply where the task sets none.
create function ops.template_run_spec(p_version uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
    select jsonb_build_object(
        'name', t.name,
        'tasks', (select jsonb_agg(
                     coalesce(x.task -> 'config', '{}')
                     || jsonb_strip_nulls(jsonb_build_object(
                            'max_attempts', v.max_attempts, 'retry_backoff_s', v.retry_backoff_s,
                            'timeout_s', v.timeout_s))
                     || (x.task - 'config')
                     order by x.n)
                  from jsonb_array_elements(v.tasks) with ordinality as x(task, n)))
    from ops.job_template_versions v join ops.job_templates t on t.id = v.template_id
    where v.id = p_version
$$;

-- Submit a run of a template (params are validated against the version's params JSON Schema by
-- the API before this call). Operators may run; viewers get LH403 from ops.submit_run.
create function ops.submit_template_run(
    p_template uuid,
    p_environment text,
    p_params jsonb default '{}',
    p_version integer default null,
    p_trigger text default 'api',
    p_requested_by uuid default null,
    p_requested_by_name text default null,
    p_idempotency_key text default null,
    p_priority integer default 0,
    p_tags text[] default '{}',
    p_schedule uuid default null,
    p_backfill uuid default null
) returns table (run_id uuid, created boolean, refusal text, version integer)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_template ops.job_templates;
    v_env uuid;
    v_version_id uuid;
    v_version integer;
    r record;
begin
    select * into v_template from ops.job_templates t where t.id = p_template;
    if not found then
        raise exception using errcode = 'LH404', column = 'template',
            message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(v_template.project_id, 'operator');
    if v_template.archived_at is not null then
        perform ops.invalid('template', format('job template "%s" is archived; restore it (add it back to the bundle) to run it',
            v_template.name));
    end if;
    select e.id into v_env from ops.environments e where e.project_id = v_template.project_id and e.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project (dev, staging or prod)', p_environment));
    end if;
    v_version_id := ops.resolve_template_version(p_template, v_env, p_version);
    select v.version into v_version from ops.job_template_versions v where v.id = v_version_id;
    select * into r from ops.submit_run(
        v_template.project_id, p_environment, ops.template_run_spec(v_version_id), p_params, p_trigger,
        p_requested_by, p_requested_by_name, p_idempotency_key, p_priority,
        array(select distinct x from unnest(v_template.tags || coalesce(p_tags, '{}')) x order by 1),
        null, v_version_id, p_schedule, p_backfill);
    return query select r.run_id, r.created, r.refusal, v_version;
end;
$$;

-- Schedules: policies and the scheduler's plan --------------------------------------------------

-- catchup (after downtime): none = fire only what is at most misfire_grace_s late, latest = only
-- the newest due fire, all = every due fire up to catchup_limit (the newest ones). overlap (a run
-- of the schedule still queued or running): allow, skip, cancel_previous, queue_one. jitter_s
-- delays each fire by a stable pseudo-random 0..jitter_s seconds. paused_at is an operator's
-- pause (not part of the bundle: a deploy does not resume it). next_fire_at is the logical cron
-- time of the next fire and next_due_at the moment to fire it (jitter added); the scheduler keeps
-- both, and any change of what they depend on clears them so that it plans again from now.
alter table ops.schedules
    add column catchup text not null default 'latest' check (catchup in ('none', 'latest', 'all')),
    add column catchup_limit integer not null default 10 check (catchup_limit between 1 and 1000),
    add column overlap text not null default 'allow'
        check (overlap in ('allow', 'skip', 'cancel_previous', 'queue_one')),
    add column jitter_s integer not null default 0 check (jitter_s between 0 and 3600),
    add column misfire_grace_s integer not null default 60 check (misfire_grace_s between 1 and 86400),
    add column paused_at timestamptz,
    add column paused_by text,
    add column next_fire_at timestamptz,
    add column next_due_at timestamptz;

-- The scheduler's scan: due schedules in due order, and schedules not planned yet.
create index schedules_due on ops.schedules (next_due_at) where enabled and paused_at is null;
create index schedules_unplanned on ops.schedules (id) where enabled and paused_at is null and next_due_at is null;

create function ops.schedules_replan() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if tg_op = 'INSERT' or new.cron is distinct from old.cron or new.timezone is distinct from old.timezone
       or new.jitter_s is distinct from old.jitter_s or new.enabled is distinct from old.enabled
       or new.paused_at is distinct from old.paused_at then
        new.next_fire_at := null;
        new.next_due_at := null;
    end if;
    return new;
end;
$$;

create trigger schedules_replan before insert or update on ops.schedules
    for each row execute function ops.schedules_replan();

-- One row per (schedule, fire time): the unique key is what makes a fire happen exactly once
-- across replicas. status: fired (run_id set), queued (overlap = queue_one, waiting for the
-- previous run), skipped, missed (catch-up policy) or failed (the run could not be submitted).
create table ops.schedule_fires (
    id uuid primary key default gen_random_uuid(),
    schedule_id uuid not null references ops.schedules (id) on delete cascade,
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    fire_time timestamptz not null,
    due_at timestamptz not null,
    status text not null check (status in ('fired', 'queued', 'skipped', 'missed', 'failed')),
    reason text,
    run_id uuid references ops.runs (id),
    params jsonb not null default '{}' check (jsonb_typeof(params) = 'object'),
    template_version integer,
    trigger text not null default 'schedule' check (trigger in ('schedule', 'manual')),
    fired_by text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (schedule_id, fire_time),
    check (status <> 'fired' or run_id is not null)
);
create index schedule_fires_queued on ops.schedule_fires (schedule_id, fire_time) where status = 'queued';
create index schedule_fires_org on ops.schedule_fires (org_id);
create index schedule_fires_project_time on ops.schedule_fires (project_id, fire_time desc);

-- Backfills ---------------------------------------------------------------------------------------

create table ops.backfills (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    template_id uuid not null references ops.job_templates (id),
    environment_id uuid not null references ops.environments (id),
    schedule_id uuid,
    range_start timestamptz not null,
    range_end timestamptz not null,
    step text not null,
    timezone text not null default 'UTC',
    params jsonb not null default '{}' check (jsonb_typeof(params) = 'object'),
    template_version integer,
    max_concurrency integer not null default 1 check (max_concurrency between 1 and 100),
    run_order text not null default 'oldest_first' check (run_order in ('oldest_first', 'newest_first')),
    total integer not null check (total between 1 and 10000),
    status text not null default 'running' check (status in ('running', 'succeeded', 'failed', 'cancelled')),
    requested_by uuid,
    requested_by_name text,
    cancelled_at timestamptz,
    cancelled_by text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    finished_at timestamptz,
    check (range_start < range_end)
);
create index backfills_running on ops.backfills (created_at) where status = 'running';
create index backfills_project_created on ops.backfills (project_id, created_at desc);
create index backfills_org on ops.backfills (org_id);

-- One row per interval, in run order (position 1 runs first).
create table ops.backfill_intervals (
    backfill_id uuid not null references ops.backfills (id),
    position integer not null check (position >= 1),
    data_interval_start timestamptz not null,
    data_interval_end timestamptz not null,
    status text not null default 'pending' check (status in ('pending', 'submitted', 'cancelled', 'failed')),
    run_id uuid references ops.runs (id),
    error text,
    submitted_at timestamptz,
    primary key (backfill_id, position),
    unique (backfill_id, data_interval_start)
);
create index backfill_intervals_pending on ops.backfill_intervals (backfill_id, position) where status = 'pending';

alter table ops.runs add constraint runs_backfill_fk foreign key (backfill_id) references ops.backfills (id) not valid;

-- Scheduler functions (trusted callers: the control room's own connection) ------------------------

-- Submit one fire's run with the schedule's overlap policy; the fire row exists (status queued).
-- Returns the fire's final status.
create function ops.apply_schedule_fire(p_fire uuid, p_release boolean default false) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    f ops.schedule_fires;
    s ops.schedules;
    v_env text;
    v_active uuid[];
    r record;
begin
    select * into f from ops.schedule_fires where id = p_fire for update;
    select * into s from ops.schedules where id = f.schedule_id;
    select e.name into v_env from ops.environments e where e.id = s.environment_id;
    v_active := array(select x.id from ops.runs x
                      where x.schedule_id = s.id and x.status in ('queued', 'running') order by x.created_at);
    if cardinality(v_active) > 0 and f.trigger = 'schedule' then
        if s.overlap = 'skip' then
            update ops.schedule_fires set status = 'skipped', updated_at = now(),
                reason = format('overlap=skip: run %s of this schedule is still %s', v_active[1],
                                (select x.status from ops.runs x where x.id = v_active[1]))
            where id = f.id;
            return 'skipped';
        elsif s.overlap = 'queue_one' then
            if not p_release and exists (select 1 from ops.schedule_fires q
                       where q.schedule_id = s.id and q.status = 'queued' and q.id <> f.id) then
                update ops.schedule_fires set status = 'skipped', updated_at = now(),
                    reason = 'overlap=queue_one: a fire is already queued behind the active run'
                where id = f.id;
                return 'skipped';
            end if;
            update ops.schedule_fires set status = 'queued', updated_at = now(),
                reason = format('overlap=queue_one: waits for run %s', v_active[1])
            where id = f.id;
            return 'queued';
        elsif s.overlap = 'cancel_previous' then
            perform ops.cancel_run(a, 'scheduler (overlap=cancel_previous)') from unnest(v_active) a;
        end if;
    end if;
    -- Checked here rather than caught: an exception block per fire is a subtransaction, and
    -- hundreds of them in one batch would overflow every backend's subtransaction cache.
    if (select t.archived_at from ops.job_templates t where t.id = s.template_id) is not null then
        update ops.schedule_fires set status = 'failed', updated_at = now(),
            reason = 'run not submitted: the job template is archived'
        where id = f.id;
        return 'failed';
    end if;
    if f.template_version is not null and not exists (
            select 1 from ops.job_template_versions v where v.template_id = s.template_id and v.version = f.template_version) then
        update ops.schedule_fires set status = 'failed', updated_at = now(),
            reason = format('run not submitted: the job template has no version %s', f.template_version)
        where id = f.id;
        return 'failed';
    end if;
    select * into r from ops.submit_template_run(
        s.template_id, v_env, f.params, f.template_version, 'schedule', null,
        case when f.trigger = 'manual' then coalesce(f.fired_by, 'manual fire') else 'scheduler' end,
        null, 0, '{}', s.id, null);
    if r.refusal is not null then
        update ops.schedule_fires set status = 'failed', updated_at = now(), reason = 'run not submitted: ' || r.refusal
        where id = f.id;
        return 'failed';
    end if;
    update ops.schedule_fires
    set status = 'fired', run_id = r.run_id, template_version = r.version, updated_at = now(),
        reason = case when p_release then 'overlap=queue_one: released when the previous run ended' end
    where id = f.id;
    return 'fired';
end;
$$;

-- One batch of the scheduler's decisions, in one transaction with the FOR UPDATE claim of the
-- schedules: p_fires is [{schedule_id, fire_time, due_at, status: fire|missed|failed, reason,
-- params, template_version}], p_plans is [{schedule_id, next_fire_at, next_due_at}]. A fire that
-- already exists (another replica, or an earlier attempt) is left alone: the unique key decides.
-- Returns how many fires were recorded as each status.
create function ops.record_schedule_fires(p_fires jsonb, p_plans jsonb)
returns table (status text, fires integer)
language plpgsql security definer
set search_path = ''
as $$
declare
    x jsonb;
    v_id uuid;
    v_status text;
    v_counts jsonb := '{}';
begin
    for x in select * from jsonb_array_elements(p_fires) loop
        insert into ops.schedule_fires as f (schedule_id, org_id, project_id, fire_time, due_at, status, reason,
                                             params, template_version)
        select s.id, s.org_id, s.project_id, (x ->> 'fire_time')::timestamptz, (x ->> 'due_at')::timestamptz,
               case x ->> 'status' when 'fire' then 'queued' else x ->> 'status' end,
               x ->> 'reason', coalesce(x -> 'params', '{}'), (x ->> 'template_version')::integer
        from ops.schedules s where s.id = (x ->> 'schedule_id')::uuid
        on conflict (schedule_id, fire_time) do nothing
        returning f.id into v_id;
        if v_id is null then
            v_status := 'duplicate';
        elsif x ->> 'status' = 'fire' then
            v_status := ops.apply_schedule_fire(v_id);
        else
            v_status := x ->> 'status';
        end if;
        v_counts := jsonb_set(v_counts, array[v_status], to_jsonb(coalesce((v_counts ->> v_status)::integer, 0) + 1));
        v_id := null;
    end loop;
    update ops.schedules s
    set next_fire_at = (p ->> 'next_fire_at')::timestamptz, next_due_at = (p ->> 'next_due_at')::timestamptz
    from jsonb_array_elements(p_plans) p
    where s.id = (p ->> 'schedule_id')::uuid;
    return query select k, v::integer from jsonb_each_text(v_counts) as e(k, v);
end;
$$;

-- Queued fires (overlap = queue_one) whose schedule has no active run any more: submit them.
create function ops.release_queued_fires(p_limit integer default 100) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_fire uuid;
    v_n integer := 0;
begin
    for v_fire in
        select f.id from ops.schedule_fires f
        where f.status = 'queued'
          and not exists (select 1 from ops.runs x where x.schedule_id = f.schedule_id and x.status in ('queued', 'running'))
        order by f.fire_time
        limit p_limit
        for update of f skip locked
    loop
        if ops.apply_schedule_fire(v_fire, true) = 'fired' then
            v_n := v_n + 1;
        end if;
    end loop;
    return v_n;
end;
$$;

-- Fire a schedule now (operators): a manual fire at the current time, whatever the overlap policy.
create function ops.fire_schedule_now(p_schedule uuid, p_params jsonb, p_template_version integer, p_by text)
returns table (fire_id uuid, status text, run_id uuid)
language plpgsql security definer
set search_path = ''
as $$
declare
    s ops.schedules;
    v_id uuid;
    v_status text;
begin
    select * into s from ops.schedules x where x.id = p_schedule;
    if not found then
        raise exception using errcode = 'LH404', column = 'schedule', message = format('schedule %s does not exist', p_schedule);
    end if;
    perform ops.require_project_role(s.project_id, 'operator');
    insert into ops.schedule_fires (schedule_id, org_id, project_id, fire_time, due_at, status, params,
                                    template_version, trigger, fired_by)
    values (s.id, s.org_id, s.project_id, clock_timestamp(), clock_timestamp(), 'queued', p_params,
            p_template_version, 'manual', coalesce(p_by, auth.uid()::text, session_user::text))
    returning id into v_id;
    v_status := ops.apply_schedule_fire(v_id);
    return query select f.id, f.status, f.run_id from ops.schedule_fires f where f.id = v_id;
end;
$$;

-- Pause or resume a schedule (operators). Resuming plans again from now: fires that fell in the
-- pause are not caught up.
create function ops.set_schedule_paused(p_schedule uuid, p_paused boolean, p_by text default null)
returns ops.schedules
language plpgsql security definer
set search_path = ''
as $$
declare
    s ops.schedules;
begin
    select * into s from ops.schedules x where x.id = p_schedule for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'schedule', message = format('schedule %s does not exist', p_schedule);
    end if;
    perform ops.require_project_role(s.project_id, 'operator');
    if p_paused and s.paused_at is null then
        update ops.schedules x set paused_at = now(),
            paused_by = coalesce(p_by, nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text)
        where x.id = p_schedule returning * into s;
    elsif not p_paused and s.paused_at is not null then
        update ops.schedules x set paused_at = null, paused_by = null where x.id = p_schedule returning * into s;
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (coalesce(p_by, nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
            'schedules', s.id, s.project_id, case when p_paused then 'pause' else 'resume' end, '{}');
    return s;
end;
$$;

-- Backfill functions ------------------------------------------------------------------------------

-- Create a backfill (operators): the intervals come computed (and the params validated) from the
-- API; p_intervals is [[start, end], ...] in run order.
create function ops.create_backfill(
    p_template uuid,
    p_environment text,
    p_range_start timestamptz,
    p_range_end timestamptz,
    p_step text,
    p_timezone text,
    p_params jsonb,
    p_template_version integer,
    p_max_concurrency integer,
    p_run_order text,
    p_intervals jsonb,
    p_schedule uuid default null,
    p_requested_by uuid default null,
    p_requested_by_name text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_env uuid;
    v_id uuid;
begin
    select * into t from ops.job_templates x where x.id = p_template;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'operator');
    select e.id into v_env from ops.environments e where e.project_id = t.project_id and e.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project (dev, staging or prod)', p_environment));
    end if;
    if jsonb_typeof(p_intervals) <> 'array' or jsonb_array_length(p_intervals) = 0 then
        perform ops.invalid('intervals', 'the range holds no interval of this step');
    end if;
    insert into ops.backfills (org_id, project_id, template_id, environment_id, schedule_id, range_start, range_end,
                               step, timezone, params, template_version, max_concurrency, run_order, total,
                               requested_by, requested_by_name)
    values (t.org_id, t.project_id, t.id, v_env, p_schedule, p_range_start, p_range_end, p_step, p_timezone,
            coalesce(p_params, '{}'), p_template_version, p_max_concurrency, p_run_order,
            jsonb_array_length(p_intervals), p_requested_by, p_requested_by_name)
    returning id into v_id;
    insert into ops.backfill_intervals (backfill_id, position, data_interval_start, data_interval_end)
    select v_id, n, (i ->> 0)::timestamptz, (i ->> 1)::timestamptz
    from jsonb_array_elements(p_intervals) with ordinality as x(i, n);
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, new_status, detail)
    values (coalesce(p_requested_by_name, nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text,
                     session_user::text),
            'backfills', v_id, t.project_id, 'create', 'running',
            jsonb_build_object('template', t.name, 'environment', p_environment, 'intervals', jsonb_array_length(p_intervals)));
    perform ops.advance_backfill(v_id);
    return v_id;
end;
$$;

-- Submit the next intervals of a running backfill up to its concurrency limit and settle its
-- status when every run has ended. Returns the runs submitted.
create function ops.advance_backfill(p_backfill uuid) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    b ops.backfills;
    i ops.backfill_intervals;
    v_env text;
    v_active integer;
    v_n integer := 0;
    r record;
    v_params jsonb;
begin
    select * into b from ops.backfills x where x.id = p_backfill for update skip locked;
    if not found or b.status <> 'running' then
        return 0;
    end if;
    select e.name into v_env from ops.environments e where e.id = b.environment_id;
    select count(*) into v_active from ops.runs x where x.backfill_id = b.id and x.status in ('queued', 'running');
    for i in
        select * from ops.backfill_intervals x where x.backfill_id = b.id and x.status = 'pending'
        order by x.position limit greatest(b.max_concurrency - v_active, 0)
    loop
        v_params := b.params || jsonb_build_object(
            'logical_date', to_jsonb(i.data_interval_end), 'data_interval_start', to_jsonb(i.data_interval_start),
            'data_interval_end', to_jsonb(i.data_interval_end));
        begin
            select * into r from ops.submit_template_run(
                b.template_id, v_env, v_params, b.template_version, 'backfill', b.requested_by,
                coalesce(b.requested_by_name, 'backfill'), null, 0, '{}', b.schedule_id, b.id);
        exception when sqlstate 'LH404' or sqlstate 'LH422' or sqlstate 'LH403' then
            r := null;
            update ops.backfill_intervals x set status = 'failed', error = sqlerrm
            where x.backfill_id = b.id and x.position = i.position;
            continue;
        end;
        if r.refusal is not null then
            exit;  -- a cap is reached: try again on the next pass
        end if;
        update ops.backfill_intervals x set status = 'submitted', run_id = r.run_id, submitted_at = now()
        where x.backfill_id = b.id and x.position = i.position;
        v_n := v_n + 1;
    end loop;
    if not exists (select 1 from ops.backfill_intervals x where x.backfill_id = b.id and x.status = 'pending')
       and not exists (select 1 from ops.runs x where x.backfill_id = b.id and x.status in ('queued', 'running')) then
        update ops.backfills x
        set status = case when exists (
                select 1 from ops.backfill_intervals y left join ops.runs z on z.id = y.run_id
                where y.backfill_id = b.id and (y.status = 'failed' or z.status in ('failed', 'cancelled')))
                then 'failed' else 'succeeded' end,
            finished_at = now(), updated_at = now()
        where x.id = b.id;
    else
        update ops.backfills x set updated_at = now() where x.id = b.id and v_n > 0;
    end if;
    return v_n;
end;
$$;

-- Advance every running backfill (the scheduler calls this each tick). Returns the runs submitted.
create function ops.advance_backfills(p_limit integer default 100) returns integer
language sql security definer
set search_path = ''
as $$
    select coalesce(sum(ops.advance_backfill(b.id)), 0)::integer
    from (select x.id from ops.backfills x where x.status = 'running' order by x.created_at limit p_limit) b
$$;

-- Cancel a backfill (operators): pending intervals never start, its active runs are cancelled.
create function ops.cancel_backfill(p_backfill uuid, p_by text default null) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    b ops.backfills;
    v_by text := coalesce(p_by, nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text);
begin
    select * into b from ops.backfills x where x.id = p_backfill for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'backfill_id', message = format('backfill %s does not exist', p_backfill);
    end if;
    perform ops.require_project_role(b.project_id, 'operator');
    if b.status <> 'running' then
        return b.status;
    end if;
    update ops.backfill_intervals x set status = 'cancelled' where x.backfill_id = b.id and x.status = 'pending';
    perform ops.cancel_run(x.id, v_by) from ops.runs x where x.backfill_id = b.id and x.status in ('queued', 'running');
    update ops.backfills x set status = 'cancelled', cancelled_at = now(), cancelled_by = v_by, finished_at = now(),
        updated_at = now()
    where x.id = b.id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status)
    values (v_by, 'backfills', b.id, b.project_id, 'status', 'running', 'cancelled');
    return 'cancelled';
end;
$$;

-- Row-level security --------------------------------------------------------------------------------

alter table ops.schedule_fires enable row level security;
alter table ops.backfills enable row level security;
alter table ops.backfill_intervals enable row level security;

grant select on ops.schedule_fires, ops.backfills, ops.backfill_intervals to authenticated;
grant all on ops.schedule_fires, ops.backfills, ops.backfill_intervals to service_role;

create policy schedule_fires_read on ops.schedule_fires for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy backfills_read on ops.backfills for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy backfill_intervals_read on ops.backfill_intervals for select to authenticated
    using (backfill_id in (select b.id from ops.backfills b));

-- Functions: end users may submit template runs, fire, pause and backfill (each checks the role);
-- the scheduler's batch functions are for the control room's trusted connection only.
revoke execute on function
    ops.submit_run(uuid, text, jsonb, jsonb, text, uuid, text, text, integer, text[], uuid, uuid, uuid, uuid),
    ops.guard_run_origin(), ops.resolve_template_version(uuid, uuid, integer), ops.template_run_spec(uuid),
    ops.submit_template_run(uuid, text, jsonb, integer, text, uuid, text, text, integer, text[], uuid, uuid),
    ops.schedules_replan(), ops.apply_schedule_fire(uuid, boolean), ops.record_schedule_fires(jsonb, jsonb),
    ops.release_queued_fires(integer), ops.fire_schedule_now(uuid, jsonb, integer, text),
    ops.set_schedule_paused(uuid, boolean, text),
    ops.create_backfill(uuid, text, timestamptz, timestamptz, text, text, jsonb, integer, integer, text, jsonb, uuid,
                        uuid, text),
    ops.advance_backfill(uuid), ops.advance_backfills(integer), ops.cancel_backfill(uuid, text)
    from public;
grant execute on function
    ops.submit_run(uuid, text, jsonb, jsonb, text, uuid, text, text, integer, text[], uuid, uuid, uuid, uuid),
    ops.submit_template_run(uuid, text, jsonb, integer, text, uuid, text, text, integer, text[], uuid, uuid),
    ops.fire_schedule_now(uuid, jsonb, integer, text),
    ops.set_schedule_paused(uuid, boolean, text),
    ops.create_backfill(uuid, text, timestamptz, timestamptz, text, text, jsonb, integer, integer, text, jsonb, uuid,
                        uuid, text),
    ops.cancel_backfill(uuid, text)
    to anon, authenticated;
grant execute on function
    ops.submit_run(uuid, text, jsonb, jsonb, text, uuid, text, text, integer, text[], uuid, uuid, uuid, uuid),
    ops.resolve_template_version(uuid, uuid, integer), ops.template_run_spec(uuid),
    ops.submit_template_run(uuid, text, jsonb, integer, text, uuid, text, text, integer, text[], uuid, uuid),
    ops.apply_schedule_fire(uuid, boolean), ops.record_schedule_fires(jsonb, jsonb),
    ops.release_queued_fires(integer), ops.fire_schedule_now(uuid, jsonb, integer, text),
    ops.set_schedule_paused(uuid, boolean, text),
    ops.create_backfill(uuid, text, timestamptz, timestamptz, text, text, jsonb, integer, integer, text, jsonb, uuid,
                        uuid, text),
    ops.advance_backfill(uuid), ops.advance_backfills(integer), ops.cancel_backfill(uuid, text)
    to service_role;
