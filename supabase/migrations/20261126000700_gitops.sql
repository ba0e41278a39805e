-- GitOps configuration deployed from a reviewed YAML bundle (`lakehouse bundle deploy`): job
-- templates with immutable versions, schedules, alert rules and promotion gates. The routing
-- matrix and caps live in ops.routing_rules and ops.caps (20261126000100_ops_core.sql).
-- RLS: readable by the org's members, written by admins (project admins for project rows).

-- A migration runs in one transaction; on a busy control plane it must not queue behind long
-- locks (and hold up every claim behind it), so it gives up instead.
set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- Job templates -----------------------------------------------------------------------------------

-- A named, versioned job definition of a project. Removing it from the bundle archives it: its
-- versions are history that runs may point at, so they are never deleted.
create table ops.job_templates (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    description text not null default '',
    owner text,
    tags text[] not null default '{}',
    archived_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, name)
);
create index job_templates_org on ops.job_templates (org_id);

-- What a run from the template executes. A changed definition is a new version, never an edit.
create table ops.job_template_versions (
    id uuid primary key default gen_random_uuid(),
    template_id uuid not null references ops.job_templates (id),
    version integer not null check (version >= 1),
    params_schema jsonb not null default '{}' check (jsonb_typeof(params_schema) = 'object'),
    tasks jsonb not null check (jsonb_typeof(tasks) = 'array' and jsonb_array_length(tasks) >= 1),
    max_attempts integer not null default 3 check (max_attempts between 1 and 100),
    retry_backoff_s integer not null default 10 check (retry_backoff_s between 0 and 86400),
    timeout_s integer check (timeout_s is null or timeout_s > 0),
    content_sha256 text not null check (content_sha256 ~ '^[0-9a-f]{64}$'),
    created_by text,
    created_at timestamptz not null default now(),
    unique (template_id, version)
);

create trigger job_template_versions_immutable before update or delete on ops.job_template_versions
    for each row execute function ops.refuse_change();
create trigger job_template_versions_no_truncate before truncate on ops.job_template_versions
    for each statement execute function ops.refuse_change();

-- The tasks of a version obey the same rules as a submitted run's (keys, engines, DAG, retries),
-- whoever writes them: the bundle validates first, this catches any other writer.
create function ops.validate_template_version() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform ops.validate_run_spec(jsonb_build_object('tasks', new.tasks));
    return new;
end;
$$;

create trigger job_template_versions_validate before insert on ops.job_template_versions
    for each row execute function ops.validate_template_version();

-- Schedules ---------------------------------------------------------------------------------------

create table ops.schedules (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    template_id uuid not null references ops.job_templates (id),
    environment_id uuid not null references ops.environments (id),
    -- Five cron fields (minute hour day-of-month month day-of-week) or a macro such as @daily.
    cron text not null check (
        cron ~ '^\S+(\s+\S+){4}$'
        or cron in ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly')),
    timezone text not null default 'UTC',
    params jsonb not null default '{}' check (jsonb_typeof(params) = 'object'),
    enabled boolean not null default true,
    description text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, name)
);
create index schedules_org on ops.schedules (org_id);
create index schedules_template on ops.schedules (template_id);
create index schedules_enabled on ops.schedules (project_id) where enabled;

-- Alert rules -------------------------------------------------------------------------------------

-- threshold: consecutive failures (run_failed), seconds (run_duration, queue_wait,
-- executor_offline); notify: targets such as an e-mail address, slack:#channel or a webhook URL;
-- escalate: also page the matching routing rule's owner and escalation chain.
create table ops.alert_rules (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind text not null check (kind in (
        'run_failed', 'task_failed', 'run_duration', 'queue_wait', 'cap_breach', 'executor_offline')),
    project_id uuid references ops.projects (id),
    match_environment text check (match_environment in ('dev', 'staging', 'prod')),
    match_template_id uuid references ops.job_templates (id),
    threshold integer check (threshold is null or threshold > 0),
    window_s integer check (window_s is null or window_s > 0),
    severity text not null default 'warning' check (severity in ('info', 'warning', 'critical')),
    notify text[] not null default '{}',
    escalate boolean not null default true,
    enabled boolean not null default true,
    description text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name),
    check (kind not in ('run_duration', 'queue_wait') or threshold is not null),
    check (match_template_id is null or project_id is not null)
);

-- Promotion gates ---------------------------------------------------------------------------------

-- What a template version must show before it is promoted from one environment to the next.
create table ops.promotion_gates (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    template_id uuid references ops.job_templates (id),
    from_environment text not null check (from_environment in ('dev', 'staging', 'prod')),
    to_environment text not null check (to_environment in ('dev', 'staging', 'prod')),
    min_successful_runs integer not null default 1 check (min_successful_runs between 0 and 1000),
    required_approvals integer not null default 0 check (required_approvals between 0 and 10),
    approvers text[] not null default '{}',
    required_checks text[] not null default '{}',
    enabled boolean not null default true,
    description text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, name),
    check (array_position(array['dev', 'staging', 'prod'], from_environment)
           < array_position(array['dev', 'staging', 'prod'], to_environment))
);
create index promotion_gates_org on ops.promotion_gates (org_id);

-- Consistency guards ------------------------------------------------------------------------------

-- Rows name an org, a project and things of that project; they must agree, and a timezone must
-- be one Postgres knows (the scheduler computes fire times with it). Security definer: whether the
-- ids agree must not depend on what the writer may read; the RLS policies decide who may write.
create function ops.guard_gitops_scope() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    v_row jsonb := to_jsonb(new);
    v_project uuid := (v_row ->> 'project_id')::uuid;
    v_template uuid := coalesce(v_row ->> 'template_id', v_row ->> 'match_template_id')::uuid;
    v_environment uuid := (v_row ->> 'environment_id')::uuid;
begin
    if v_project is not null and not exists (
            select 1 from ops.projects p where p.id = v_project and p.org_id = new.org_id) then
        perform ops.invalid('project_id', format('project %s is not a project of org %s', v_project, new.org_id));
    end if;
    if v_template is not null and not exists (
            select 1 from ops.job_templates t where t.id = v_template and t.project_id = v_project) then
        perform ops.invalid('template_id', format('job template %s is not a template of project %s', v_template, v_project));
    end if;
    if v_environment is not null and not exists (
            select 1 from ops.environments e where e.id = v_environment and e.project_id = v_project) then
        perform ops.invalid('environment_id',
            format('environment %s is not an environment of project %s', v_environment, v_project));
    end if;
    if tg_table_name = 'schedules' then
        begin
            perform now() at time zone (v_row ->> 'timezone');
        exception when invalid_parameter_value then
            perform ops.invalid('timezone', format('"%s" is not a time zone name such as "UTC" or "Europe/Paris"',
                v_row ->> 'timezone'));
        end;
    end if;
    return new;
end;
$$;

create trigger job_templates_scope before insert or update on ops.job_templates
    for each row execute function ops.guard_gitops_scope();
create trigger schedules_scope before insert or update on ops.schedules
    for each row execute function ops.guard_gitops_scope();
create trigger alert_rules_scope before insert or update on ops.alert_rules
    for each row execute function ops.guard_gitops_scope();
create trigger promotion_gates_scope before insert or update on ops.promotion_gates
    for each row execute function ops.guard_gitops_scope();

-- Row-level security ------------------------------------------------------------------------------

alter table ops.job_templates enable row level security;
alter table ops.job_template_versions enable row level security;
alter table ops.schedules enable row level security;
alter table ops.alert_rules enable row level security;
alter table ops.promotion_gates enable row level security;

grant select on ops.job_templates, ops.job_template_versions, ops.schedules, ops.alert_rules,
    ops.promotion_gates to authenticated;
grant insert, update, delete on ops.job_templates, ops.schedules, ops.alert_rules, ops.promotion_gates
    to authenticated;
-- Versions are immutable: inserting is the only write there is.
grant insert on ops.job_template_versions to authenticated;
grant all on ops.job_templates, ops.job_template_versions, ops.schedules, ops.alert_rules,
    ops.promotion_gates to service_role;

create policy job_templates_read on ops.job_templates for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy job_templates_admin on ops.job_templates for all to authenticated
    using (ops.has_project_role(project_id, 'admin')) with check (ops.has_project_role(project_id, 'admin'));

create policy job_template_versions_read on ops.job_template_versions for select to authenticated
    using (template_id in (select t.id from ops.job_templates t));
create policy job_template_versions_admin on ops.job_template_versions for insert to authenticated
    with check (exists (select 1 from ops.job_templates t
                        where t.id = template_id and ops.has_project_role(t.project_id, 'admin')));

create policy schedules_read on ops.schedules for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy schedules_admin on ops.schedules for all to authenticated
    using (ops.has_project_role(project_id, 'admin')) with check (ops.has_project_role(project_id, 'admin'));

-- Org-wide alert rules are configured by org admins, project rules by the project's admins.
create policy alert_rules_read on ops.alert_rules for select to authenticated
    using (ops.org_role(org_id) is not null
           or (project_id is not null and ops.has_project_role(project_id, 'viewer')));
create policy alert_rules_admin on ops.alert_rules for all to authenticated
    using (case when project_id is null then ops.org_role(org_id) = 'admin'
                else ops.has_project_role(project_id, 'admin') end)
    with check (case when project_id is null then ops.org_role(org_id) = 'admin'
                     else ops.has_project_role(project_id, 'admin') end);

create policy promotion_gates_read on ops.promotion_gates for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy promotion_gates_admin on ops.promotion_gates for all to authenticated
    using (ops.has_project_role(project_id, 'admin')) with check (ops.has_project_role(project_id, 'admin'));

revoke execute on function ops.validate_template_version(), ops.guard_gitops_scope() from public;
