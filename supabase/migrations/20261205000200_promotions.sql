-- Promotion gates (issue 18): a job template version moves dev -> staging -> prod only through the
-- checks and approvals of the gate into each environment, and a gated environment runs only the
-- version deployed there.
--
-- * ops.deployments: append-only history of which version of a template each environment runs;
--   the newest row per (template, environment) is the deployed version. A version reaches a gated
--   environment only by promotion (or a rollback to an earlier one): a new job runs nowhere gated
--   until its first version is promoted. Jobs that exist when this migration runs keep running
--   their latest version everywhere (recorded as 'initial' deployments by 'migration').
-- * ops.promotion_requests: "move version N from staging to prod"; what was asked and by whom is
--   immutable, only the outcome moves (pending -> promoted | rejected | cancelled | superseded).
--   The gate is copied into the request when it opens: a request is judged by the rules it was
--   opened under. checks holds the last evaluation with its evidence; evidence_epoch counts the
--   changes of that evidence, and an approval counts only while the epoch it was given in lasts.
-- * ops.promotion_decisions: approvals, rejections and cancellations with their comments
--   (append-only).
-- * ops.version_check_reports: external checks (CI's pr-gate, ...) reported for a template
--   version, latest report per name wins (append-only).
--
-- Checks are evaluated here, in SQL, with an injectable clock (p_now): by the request, by each
-- decision and by the control room's promotion loop (every replica; each request is evaluated
-- under its row lock, and the deployment is written in the same transaction as the transition
-- out of pending, so a promotion happens exactly once). Environments into which no enabled gate
-- leads (dev always) run the requested version or the latest, as before.
--
-- DESIGN decision 7: org_id on every table, RLS with read policies for members, `authenticated`
-- SELECT only; writes through the SECURITY DEFINER functions below, which check the caller's role.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- The window in which a version's successful runs count (days before the evaluation).
alter table ops.promotion_gates
    add column window_days integer not null default 30 check (window_days between 1 and 3650);

-- Tables -------------------------------------------------------------------------------------------

create table ops.deployments (
    id bigserial primary key,
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    template_id uuid not null references ops.job_templates (id),
    environment_id uuid not null references ops.environments (id),
    environment text not null,
    version integer not null check (version >= 1),
    version_id uuid not null references ops.job_template_versions (id),
    previous_version integer,
    action text not null check (action in ('initial', 'promote', 'rollback')),
    promotion_id uuid,
    actor text not null,
    comment text not null default '',
    deployed_at timestamptz not null default now()
);
create index deployments_current on ops.deployments (template_id, environment_id, id desc);
create index deployments_org on ops.deployments (org_id);

create table ops.promotion_requests (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    template_id uuid not null references ops.job_templates (id),
    version integer not null check (version >= 1),
    version_id uuid not null references ops.job_template_versions (id),
    from_environment text not null check (from_environment in ('dev', 'staging', 'prod')),
    to_environment text not null check (to_environment in ('dev', 'staging', 'prod')),
    gate_id uuid,
    gate jsonb not null check (jsonb_typeof(gate) = 'object'),
    requested_by text not null,
    requested_by_id uuid,
    comment text not null default '',
    status text not null default 'pending'
        check (status in ('pending', 'promoted', 'rejected', 'cancelled', 'superseded')),
    checks jsonb not null default '[]' check (jsonb_typeof(checks) = 'array'),
    checks_passed boolean not null default false,
    evidence_fingerprint text,
    evidence_epoch integer not null default 0,
    evaluated_at timestamptz,
    decided_at timestamptz,
    decided_by text,
    outcome text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- One open request per job and target environment (a new one supersedes the old).
create unique index promotion_requests_one_pending on ops.promotion_requests (template_id, to_environment)
    where status = 'pending';
create index promotion_requests_project_created on ops.promotion_requests (project_id, created_at desc, id desc);
create index promotion_requests_pending on ops.promotion_requests (evaluated_at) where status = 'pending';
create index promotion_requests_org on ops.promotion_requests (org_id);

create table ops.promotion_decisions (
    id bigserial primary key,
    request_id uuid not null references ops.promotion_requests (id),
    org_id uuid not null references ops.orgs (id),
    decision text not null check (decision in ('approve', 'reject', 'cancel')),
    actor text not null,
    actor_id uuid,
    comment text not null default '',
    evidence_epoch integer not null,
    created_at timestamptz not null default now()
);
create unique index promotion_decisions_one_approval on ops.promotion_decisions (request_id, actor_id, evidence_epoch)
    where decision = 'approve';
create index promotion_decisions_request on ops.promotion_decisions (request_id, id);
create index promotion_decisions_org on ops.promotion_decisions (org_id);

create table ops.version_check_reports (
    id bigserial primary key,
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    template_id uuid not null references ops.job_templates (id),
    version integer not null check (version >= 1),
    name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$'),
    status text not null check (status in ('passed', 'failed', 'pending')),
    url text check (url is null or url ~ '^https?://'),
    summary text not null default '',
    reported_by text not null,
    reported_at timestamptz not null default now()
);
create index version_check_reports_latest on ops.version_check_reports (template_id, version, name, id desc);
create index version_check_reports_org on ops.version_check_reports (org_id);

-- History is append-only; a request's question is immutable, only its outcome moves once.
create trigger deployments_append_only before update or delete on ops.deployments
    for each row execute function ops.refuse_change();
create trigger deployments_no_truncate before truncate on ops.deployments
    for each statement execute function ops.refuse_change();
create trigger promotion_decisions_append_only before update or delete on ops.promotion_decisions
    for each row execute function ops.refuse_change();
create trigger promotion_decisions_no_truncate before truncate on ops.promotion_decisions
    for each statement execute function ops.refuse_change();
create trigger version_check_reports_append_only before update or delete on ops.version_check_reports
    for each row execute function ops.refuse_change();
create trigger version_check_reports_no_truncate before truncate on ops.version_check_reports
    for each statement execute function ops.refuse_change();
create trigger promotion_requests_no_delete before delete on ops.promotion_requests
    for each row execute function ops.refuse_change();
create trigger promotion_requests_no_truncate before truncate on ops.promotion_requests
    for each statement execute function ops.refuse_change();

create function ops.guard_promotion_request() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if (to_jsonb(new) - array['status', 'checks', 'checks_passed', 'evidence_fingerprint', 'evidence_epoch',
                              'evaluated_at', 'decided_at', 'decided_by', 'outcome', 'updated_at'])
       is distinct from
       (to_jsonb(old) - array['status', 'checks', 'checks_passed', 'evidence_fingerprint', 'evidence_epoch',
                              'evaluated_at', 'decided_at', 'decided_by', 'outcome', 'updated_at']) then
        raise exception using errcode = 'LH423',
            message = format('promotion request %s: what was requested is immutable', old.id),
            hint = 'open a new promotion request instead';
    end if;
    if old.status <> 'pending' and new.status is distinct from old.status then
        raise exception using errcode = 'LH423',
            message = format('promotion request %s is %s already; it cannot become %s', old.id, old.status, new.status),
            hint = 'open a new promotion request';
    end if;
    return new;
end;
$$;

create trigger promotion_requests_guard before update on ops.promotion_requests
    for each row execute function ops.guard_promotion_request();

-- Helpers ------------------------------------------------------------------------------------------

-- A given person's role on a project (ops.project_role is the caller's).
create function ops.user_project_role(p_project uuid, p_user uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select role from (
        select pm.role from ops.project_members pm where pm.project_id = p_project and pm.user_id = p_user
        union all
        select om.role from ops.org_members om join ops.projects p on p.org_id = om.org_id
        where p.id = p_project and om.user_id = p_user
    ) roles
    order by ops.role_rank(role) desc
    limit 1
$$;

-- Who acts: a signed-in caller is auth.uid() whatever it passes; a trusted caller (the CLI on the
-- control plane's own connection, the demo) names the person.
create function ops.promotion_actor(p_user uuid) returns uuid
language sql stable
set search_path = ''
as $$
    select case when ops.caller_is_end_user() then auth.uid() else p_user end
$$;

-- The enabled gate leading into an environment for a template (one naming the template wins over a
-- project-wide one); null when the environment is not gated.
create function ops.gate_into(p_template uuid, p_environment text) returns ops.promotion_gates
language sql stable security definer
set search_path = ''
as $$
    select g.* from ops.promotion_gates g join ops.job_templates t on t.project_id = g.project_id
    where t.id = p_template and g.enabled and g.to_environment = p_environment and p_environment <> 'dev'
      and (g.template_id is null or g.template_id = p_template)
    order by g.template_id is null, g.name
    limit 1
$$;

-- The deployment in force for a template in an environment (null when none).
create function ops.current_deployment(p_template uuid, p_environment uuid) returns ops.deployments
language sql stable security definer
set search_path = ''
as $$
    select d.* from ops.deployments d
    where d.template_id = p_template and d.environment_id = p_environment
    order by d.id desc limit 1
$$;

-- Enforcement: why a run of a template in a gated environment may not use p_version (null: it may;
-- p_version null asks for the deployed one). Environments no enabled gate leads into refuse nothing.
create function ops.template_version_refusal(p_template uuid, p_environment uuid, p_version integer default null)
returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_env text;
    v_name text;
    v_gate ops.promotion_gates;
    v_deployed ops.deployments;
begin
    select e.name into v_env from ops.environments e where e.id = p_environment;
    v_gate := ops.gate_into(p_template, v_env);
    if v_gate.id is null then
        return null;
    end if;
    select t.name into v_name from ops.job_templates t where t.id = p_template;
    v_deployed := ops.current_deployment(p_template, p_environment);
    if v_deployed.id is null then
        return format('job "%s" has no version deployed to %s yet (gate "%s"); promote one: '
                      'lakehouse promote %s --version N --to %s', v_name, v_env, v_gate.name, v_name, v_env);
    end if;
    if p_version is not null and p_version <> v_deployed.version then
        return format('version %s of job "%s" is not the version deployed to %s (version %s is); '
                      '%s runs only promoted versions: lakehouse promote %s --version %s --to %s',
                      p_version, v_name, v_env, v_deployed.version, v_env, v_name, p_version, v_env);
    end if;
    return null;
end;
$$;

-- A gated environment runs its deployed version and refuses any other (LH422 naming `version`, as the
-- other refusals of this path: backfills record it on the interval). Every template run, scheduled
-- fire and backfill resolves its version here (20261203000300_jobs.sql).
create or replace function ops.resolve_template_version(p_template uuid, p_environment uuid, p_version integer default null)
returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_id uuid;
    v_refusal text := ops.template_version_refusal(p_template, p_environment, p_version);
begin
    if v_refusal is not null then
        raise exception using errcode = 'LH422', column = 'version', message = v_refusal;
    end if;
    if (ops.gate_into(p_template, (select e.name from ops.environments e where e.id = p_environment))).id is not null then
        return (ops.current_deployment(p_template, p_environment)).version_id;
    end if;
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

-- Templates that exist already keep running what they ran: their latest version, everywhere.
insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, version_id,
                             action, actor, comment)
select t.org_id, t.project_id, t.id, e.id, e.name, v.version, v.id, 'initial', 'migration',
       'deployed when promotion gates were introduced (the version that ran before)'
from ops.job_templates t
join ops.environments e on e.project_id = t.project_id
join lateral (select x.id, x.version from ops.job_template_versions x where x.template_id = t.id
              order by x.version desc limit 1) v on true;

-- May this person approve or reject under this gate? Null when yes, else why not.
create function ops.promotion_refusal(p_project uuid, p_gate jsonb, p_user uuid, p_requester uuid) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_role text := ops.user_project_role(p_project, p_user);
    v_email text;
    v_approvers text[] := ops.json_text_array(p_gate -> 'approvers');
    a text;
begin
    if p_user is null then
        return 'approvals are given by a signed-in person';
    end if;
    if v_role is null or ops.role_rank(v_role) < ops.role_rank('operator') then
        return format('the %s role cannot approve or reject promotions; approvers are operators or admins named by gate "%s"',
                      coalesce(v_role, 'no'), p_gate ->> 'name');
    end if;
    if p_user = p_requester then
        return 'you requested this promotion: another approver must decide (four eyes)';
    end if;
    if cardinality(v_approvers) = 0 then
        if ops.role_rank(v_role) >= ops.role_rank('admin') then
            return null;
        end if;
        return format('gate "%s" names no approvers: only project admins may decide', p_gate ->> 'name');
    end if;
    select u.email into v_email from ops.users u where u.id = p_user;
    foreach a in array v_approvers loop
        if lower(a) = lower(coalesce(v_email, ''))
           or (a like 'role:%' and ops.role_rank(v_role) >= ops.role_rank(substr(a, 6))) then
            return null;
        end if;
    end loop;
    return format('you are not an approver of gate "%s" (approvers: %s)', p_gate ->> 'name',
                  array_to_string(v_approvers, ', '));
end;
$$;

-- Why the caller (or, for trusted callers, p_user) may not approve or reject a request; null when they
-- may. The pages ask it to show Approve and Reject to those who may only.
create function ops.promotion_decision_refusal(p_request uuid, p_user uuid default null) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
    r ops.promotion_requests;
begin
    select * into r from ops.promotion_requests x where x.id = p_request;
    if not found or (ops.caller_is_end_user() and not ops.has_project_role(r.project_id, 'viewer')) then
        return format('promotion request %s does not exist or is not visible to you', p_request);
    end if;
    if r.status <> 'pending' then
        return format('the request is %s', r.status);
    end if;
    return ops.promotion_refusal(r.project_id, r.gate, ops.promotion_actor(p_user), r.requested_by_id);
end;
$$;

-- Evaluation -----------------------------------------------------------------------------------------

-- The checks of a request as of p_now: [{name, label, passed, summary, evidence: [{kind, id, label}]}]
-- and the fingerprint of what decides them (new successful runs beyond the minimum do not change it).
create function ops.promotion_checks(r ops.promotion_requests, p_now timestamptz,
                                     out checks jsonb, out fingerprint text)
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_min integer := coalesce((r.gate ->> 'min_successful_runs')::integer, 1);
    v_window integer := coalesce((r.gate ->> 'window_days')::integer, 30);
    v_runs uuid[];
    v_recent jsonb;
    v_tests integer;
    v_failed jsonb;
    v_incidents jsonb;
    v_job text;
    v_spec_error text;
    v_check text;
    v_report record;
    v_keys jsonb := '[]';
begin
    checks := '[]';
    -- 1. Successful runs of exactly this version in the source environment, within the window.
    v_runs := array(
        select x.id from ops.runs x join ops.environments e on e.id = x.environment_id
        where x.template_version_id = r.version_id and e.name = r.from_environment and x.status = 'succeeded'
          and x.finished_at > p_now - make_interval(days => v_window) and x.finished_at <= p_now
        order by x.finished_at desc);
    select coalesce(jsonb_agg(jsonb_build_object('kind', 'run', 'id', x.id, 'label',
               format('%s · %s', x.status, to_char(x.finished_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')))
               order by x.finished_at desc), '[]')
    into v_recent
    from (select y.* from ops.runs y where y.id = any(v_runs) order by y.finished_at desc limit 10) x;
    checks := checks || jsonb_build_array(jsonb_build_object(
        'name', 'successful_runs',
        'label', format('%s successful run%s of v%s in %s (last %s days)', v_min, case when v_min = 1 then '' else 's' end,
                        r.version, r.from_environment, v_window),
        'passed', cardinality(v_runs) >= v_min,
        'summary', format('%s of %s', cardinality(v_runs), v_min),
        'evidence', v_recent));
    v_keys := v_keys || jsonb_build_array(jsonb_build_array('successful_runs', cardinality(v_runs) >= v_min));

    -- 2. Every dbt test of those runs passed (the dbt engine's dbt.node_finished events).
    select count(*),
           coalesce(jsonb_agg(jsonb_build_object('kind', 'run', 'id', ev.run_id,
               'label', format('%s: %s', ev.data ->> 'name', ev.data ->> 'status')) order by ev.id)
               filter (where ev.data ->> 'status' in ('fail', 'error')), '[]')
    into v_tests, v_failed
    from ops.events ev
    where ev.run_id = any(v_runs) and ev.type = 'dbt.node_finished' and ev.data ->> 'resource_type' = 'test';
    checks := checks || jsonb_build_array(jsonb_build_object(
        'name', 'dbt_tests',
        'label', 'every dbt test of those runs passed',
        'passed', jsonb_array_length(v_failed) = 0,
        'summary', case when v_tests = 0 then 'no dbt tests in these runs'
                        when jsonb_array_length(v_failed) = 0 then format('%s test results, all passed', v_tests)
                        else format('%s of %s test results failed', jsonb_array_length(v_failed), v_tests) end,
        'evidence', v_failed));
    v_keys := v_keys || jsonb_build_array(jsonb_build_array('dbt_tests', v_failed));

    -- 3. No open (or acknowledged) critical alert on the job.
    select p.slug || '/' || t.name into v_job
    from ops.job_templates t join ops.projects p on p.id = t.project_id where t.id = r.template_id;
    select coalesce(jsonb_agg(jsonb_build_object('kind', 'incident', 'id', i.id, 'label', i.title)
                              order by i.first_fired_at), '[]')
    into v_incidents
    from ops.alert_incidents i
    where i.project_id = r.project_id and i.job = v_job and i.severity = 'critical' and i.state <> 'resolved';
    checks := checks || jsonb_build_array(jsonb_build_object(
        'name', 'critical_alerts',
        'label', format('no open critical alert on %s', v_job),
        'passed', jsonb_array_length(v_incidents) = 0,
        'summary', case when jsonb_array_length(v_incidents) = 0 then 'none open'
                        else format('%s open', jsonb_array_length(v_incidents)) end,
        'evidence', v_incidents));
    v_keys := v_keys || jsonb_build_array(jsonb_build_array('critical_alerts', v_incidents));

    -- 4. The version's tasks validate against the run-spec contract (as a submitted run would).
    begin
        perform ops.validate_run_spec(ops.template_run_spec(r.version_id));
    exception when others then
        v_spec_error := sqlerrm;
    end;
    checks := checks || jsonb_build_array(jsonb_build_object(
        'name', 'contract',
        'label', format('v%s validates against the run-spec contract', r.version),
        'passed', v_spec_error is null,
        'summary', coalesce(v_spec_error, 'valid'),
        'evidence', jsonb_build_array(jsonb_build_object('kind', 'version', 'id', r.version_id,
                                                         'label', format('v%s', r.version)))));
    v_keys := v_keys || jsonb_build_array(jsonb_build_array('contract', v_spec_error is null));

    -- 5. External checks the gate requires (CI's pr-gate, ...): the latest report of each.
    foreach v_check in array ops.json_text_array(r.gate -> 'required_checks') loop
        select c.* into v_report from ops.version_check_reports c
        where c.template_id = r.template_id and c.version = r.version and c.name = v_check
        order by c.id desc limit 1;
        checks := checks || jsonb_build_array(jsonb_build_object(
            'name', 'check:' || v_check,
            'label', format('%s passed on v%s', v_check, r.version),
            'passed', coalesce(v_report.status = 'passed', false),
            'summary', case when v_report.id is null then format('not reported yet (lakehouse promotions report-check)')
                            else v_report.status || coalesce(' · ' || nullif(v_report.summary, ''), '') end,
            'evidence', case when v_report.id is null then '[]'::jsonb
                             else jsonb_build_array(jsonb_build_object('kind', 'url', 'id', v_report.url,
                                  'label', format('%s by %s', v_check, v_report.reported_by))) end));
        v_keys := v_keys || jsonb_build_array(jsonb_build_array(v_check, v_report.id));
        v_report := null;
    end loop;
    fingerprint := md5(v_keys::text);
end;
$$;

-- Evaluate one pending request (its row locked) and promote it when its checks pass and enough valid
-- approvals are in. Returns the request's status afterwards.
create function ops.evaluate_promotion(p_request uuid, p_now timestamptz default now()) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    r ops.promotion_requests;
    v_checks jsonb;
    v_fingerprint text;
    v_passed boolean;
    v_epoch integer;
    v_approvals integer;
    v_env uuid;
    v_current ops.deployments;
    v_actor text := coalesce(nullif(current_setting('lakehouse.actor', true), ''), 'promotion gates');
begin
    select * into r from ops.promotion_requests x where x.id = p_request for update;
    if not found or r.status <> 'pending' then
        return r.status;
    end if;
    select c.checks, c.fingerprint into v_checks, v_fingerprint from ops.promotion_checks(r, p_now) c;
    v_passed := not exists (select 1 from jsonb_array_elements(v_checks) c where not (c ->> 'passed')::boolean);
    v_epoch := r.evidence_epoch;
    if r.evidence_fingerprint is not null and r.evidence_fingerprint <> v_fingerprint then
        v_epoch := v_epoch + 1;  -- the evidence changed: approvals given so far expire
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_actor, 'promotion_requests', r.id, r.project_id, 'evidence_changed',
                jsonb_build_object('evidence_epoch', v_epoch, 'checks_passed', v_passed));
    end if;
    update ops.promotion_requests x
    set checks = v_checks, checks_passed = v_passed, evidence_fingerprint = v_fingerprint, evidence_epoch = v_epoch,
        evaluated_at = p_now, updated_at = now()
    where x.id = r.id;
    select count(distinct d.actor_id) into v_approvals from ops.promotion_decisions d
    where d.request_id = r.id and d.decision = 'approve' and d.evidence_epoch = v_epoch;
    if not v_passed or v_approvals < coalesce((r.gate ->> 'required_approvals')::integer, 0) then
        return 'pending';
    end if;
    select e.id into v_env from ops.environments e where e.project_id = r.project_id and e.name = r.to_environment;
    v_current := ops.current_deployment(r.template_id, v_env);
    insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, version_id,
                                 previous_version, action, promotion_id, actor, comment)
    values (r.org_id, r.project_id, r.template_id, v_env, r.to_environment, r.version, r.version_id,
            v_current.version, 'promote', r.id, r.requested_by, r.comment);
    update ops.promotion_requests x
    set status = 'promoted', decided_at = p_now, decided_by = v_actor, updated_at = now(),
        outcome = format('v%s deployed to %s (%s): checks passed, %s approval%s', r.version, r.to_environment,
                         coalesce('was v' || v_current.version, 'its first deployment there'), v_approvals,
                         case when v_approvals = 1 then '' else 's' end)
    where x.id = r.id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status, detail)
    values (v_actor, 'promotion_requests', r.id, r.project_id, 'promote', 'pending', 'promoted',
            jsonb_build_object('template_id', r.template_id, 'version', r.version, 'environment', r.to_environment,
                               'previous_version', v_current.version, 'approvals', v_approvals));
    return 'promoted';
end;
$$;

-- The promotion loop's pass: evaluate pending requests not evaluated for p_min_age (each under its
-- row lock; replicas skip the rows another one holds). Returns how many were promoted.
create function ops.evaluate_pending_promotions(p_now timestamptz default now(), p_limit integer default 100,
                                                p_min_age interval default '0 seconds')
returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
    v_n integer := 0;
begin
    for v_id in
        select x.id from ops.promotion_requests x
        where x.status = 'pending'
          and (p_min_age <= interval '0' or x.evaluated_at is null or x.evaluated_at <= p_now - p_min_age)
        order by x.evaluated_at nulls first
        limit p_limit
        for update skip locked
    loop
        if ops.evaluate_promotion(v_id, p_now) = 'promoted' then
            v_n := v_n + 1;
        end if;
    end loop;
    return v_n;
end;
$$;

-- The scheduler records a gate's refusal on the fire (failed, with the reason) instead of raising: one
-- fire must never abort the batch it is in. Otherwise as in 20261203000300_jobs.sql.
create or replace function ops.apply_schedule_fire(p_fire uuid, p_release boolean default false) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    f ops.schedule_fires;
    s ops.schedules;
    v_env text;
    v_active uuid[];
    r record;
    v_refusal text;
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
    v_refusal := ops.template_version_refusal(s.template_id, s.environment_id, f.template_version);
    if v_refusal is not null then
        update ops.schedule_fires set status = 'failed', updated_at = now(), reason = 'run not submitted: ' || v_refusal
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

-- Requests, decisions, rollbacks, check reports -------------------------------------------------------

-- Ask to move version p_version of a template into p_to (operators). The gate into p_to decides the
-- source environment; a gated source must run that version already. A pending request for the same
-- job and environment is superseded. Approvers are notified in the app.
create function ops.request_promotion(p_template uuid, p_version integer, p_to text, p_comment text default '',
                                      p_user uuid default null, p_by text default null,
                                      p_now timestamptz default now())
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_gate ops.promotion_gates;
    v_version_id uuid;
    v_from_env uuid;
    v_to_env uuid;
    v_source ops.deployments;
    v_target ops.deployments;
    v_user uuid := ops.promotion_actor(p_user);
    v_by text;
    v_id uuid;
    v_gate_json jsonb;
begin
    if ops.caller_is_end_user() then
        p_now := now();  -- the injectable clock is for trusted callers (tests, the loop) only
    end if;
    select * into t from ops.job_templates x where x.id = p_template for no key update;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'operator');
    if t.archived_at is not null then
        perform ops.invalid('template', format('job "%s" is archived; restore it before promoting it', t.name));
    end if;
    if p_to is null or p_to not in ('staging', 'prod') then
        perform ops.invalid('to_environment', format('"%s": promotions go to staging or prod', p_to));
    end if;
    v_gate := ops.gate_into(p_template, p_to);
    if v_gate.id is null then
        perform ops.invalid('to_environment', format('no enabled promotion gate leads into %s for job "%s": '
            'that environment runs any version, nothing to promote (add a gate to the bundle to guard it)', p_to, t.name));
    end if;
    select v.id into v_version_id from ops.job_template_versions v where v.template_id = t.id and v.version = p_version;
    if not found then
        perform ops.invalid('version', format('job "%s" has no version %s', t.name, p_version));
    end if;
    select e.id into v_from_env from ops.environments e where e.project_id = t.project_id and e.name = v_gate.from_environment;
    select e.id into v_to_env from ops.environments e where e.project_id = t.project_id and e.name = p_to;
    if (ops.gate_into(p_template, v_gate.from_environment)).id is not null then
        v_source := ops.current_deployment(t.id, v_from_env);
        if v_source.version is distinct from p_version then
            perform ops.invalid('version', format('version %s of job "%s" is not deployed to %s (version %s is): '
                'promote it to %s first', p_version, t.name, v_gate.from_environment,
                coalesce(v_source.version::text, 'none'), v_gate.from_environment));
        end if;
    end if;
    v_target := ops.current_deployment(t.id, v_to_env);
    if v_target.version = p_version then
        perform ops.invalid('version', format('version %s of job "%s" is deployed to %s already', p_version, t.name, p_to));
    end if;
    if v_user is not null then
        select u.email into v_by from ops.users u where u.id = v_user;
    end if;
    v_by := coalesce(v_by, p_by, nullif(current_setting('lakehouse.actor', true), ''), session_user::text);
    v_gate_json := jsonb_build_object('id', v_gate.id, 'name', v_gate.name, 'from_environment', v_gate.from_environment,
        'to_environment', v_gate.to_environment, 'min_successful_runs', v_gate.min_successful_runs,
        'window_days', v_gate.window_days, 'required_approvals', v_gate.required_approvals,
        'approvers', to_jsonb(v_gate.approvers), 'required_checks', to_jsonb(v_gate.required_checks));
    update ops.promotion_requests x
    set status = 'superseded', decided_at = p_now, decided_by = v_by, updated_at = now(),
        outcome = format('superseded by a request for v%s', p_version)
    where x.template_id = t.id and x.to_environment = p_to and x.status = 'pending';
    insert into ops.promotion_requests (org_id, project_id, template_id, version, version_id, from_environment,
                                        to_environment, gate_id, gate, requested_by, requested_by_id, comment)
    values (t.org_id, t.project_id, t.id, p_version, v_version_id, v_gate.from_environment, p_to, v_gate.id,
            v_gate_json, v_by, v_user, coalesce(p_comment, ''))
    returning id into v_id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, new_status, detail)
    values (v_by, 'promotion_requests', v_id, t.project_id, 'request', 'pending',
            jsonb_build_object('template_id', t.id, 'job', t.name, 'version', p_version,
                               'from', v_gate.from_environment, 'to', p_to, 'gate', v_gate.name));
    -- In-app notifications to the people who may approve (alert channels are the alerts issue's).
    if v_gate.required_approvals > 0 then
        insert into ops.notifications (org_id, user_id, severity, title, body, link)
        select t.org_id, u.id, 'info', format('Promotion of %s v%s to %s awaits your approval', t.name, p_version, p_to),
               format('%s asks to promote %s v%s from %s to %s (gate %s).', v_by, t.name, p_version,
                      v_gate.from_environment, p_to, v_gate.name),
               '/promotions/' || v_id
        from ops.users u
        where u.is_active and u.id is distinct from v_user
          and ops.promotion_refusal(t.project_id, v_gate_json, u.id, v_user) is null;
    end if;
    perform ops.evaluate_promotion(v_id, p_now);
    return v_id;
end;
$$;

-- Approve, reject or cancel a pending request. Approvers (the gate's, operators or admins, never the
-- requester) approve and reject; the requester or an admin cancels. Concurrent decisions serialize
-- on the request's row: the second one to a decided request gets LH423.
create function ops.decide_promotion(p_request uuid, p_decision text, p_comment text default '',
                                     p_user uuid default null, p_now timestamptz default now())
returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    r ops.promotion_requests;
    v_user uuid := ops.promotion_actor(p_user);
    v_by text;
    v_refusal text;
    v_role text;
begin
    if ops.caller_is_end_user() then
        p_now := now();
    end if;
    select * into r from ops.promotion_requests x where x.id = p_request for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'request',
            message = format('promotion request %s does not exist', p_request);
    end if;
    perform ops.require_project_role(r.project_id, 'viewer');
    if p_decision not in ('approve', 'reject', 'cancel') then
        perform ops.invalid('decision', 'must be approve, reject or cancel');
    end if;
    if r.status <> 'pending' then
        raise exception using errcode = 'LH423', column = 'request',
            message = format('promotion request %s is %s already: nothing to %s', r.id, r.status, p_decision),
            hint = 'open a new promotion request';
    end if;
    select u.email into v_by from ops.users u where u.id = v_user;
    v_by := coalesce(v_by, nullif(current_setting('lakehouse.actor', true), ''), session_user::text);
    if p_decision = 'cancel' then
        v_role := ops.user_project_role(r.project_id, v_user);
        if v_user is distinct from r.requested_by_id and coalesce(ops.role_rank(v_role), 0) < ops.role_rank('admin') then
            raise exception using errcode = 'LH403',
                message = 'only the requester or a project admin may cancel a promotion request';
        end if;
    else
        v_refusal := ops.promotion_refusal(r.project_id, r.gate, v_user, r.requested_by_id);
        if v_refusal is not null then
            raise exception using errcode = 'LH403', message = format('promotion request %s: %s', r.id, v_refusal);
        end if;
    end if;
    if p_decision = 'reject' and coalesce(btrim(p_comment), '') = '' then
        perform ops.invalid('comment', 'say why you reject it (the requester reads it)');
    end if;
    insert into ops.promotion_decisions (request_id, org_id, decision, actor, actor_id, comment, evidence_epoch)
    values (r.id, r.org_id, p_decision, v_by, v_user, coalesce(p_comment, ''), r.evidence_epoch)
    on conflict (request_id, actor_id, evidence_epoch) where decision = 'approve' do nothing;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'promotion_requests', r.id, r.project_id, p_decision,
            jsonb_build_object('comment', coalesce(p_comment, ''), 'evidence_epoch', r.evidence_epoch));
    if p_decision in ('reject', 'cancel') then
        update ops.promotion_requests x
        set status = case when p_decision = 'reject' then 'rejected' else 'cancelled' end,
            decided_at = p_now, decided_by = v_by, updated_at = now(),
            outcome = format('%s by %s%s', case when p_decision = 'reject' then 'rejected' else 'cancelled' end, v_by,
                             coalesce(': ' || nullif(btrim(p_comment), ''), ''))
        where x.id = r.id;
        return case when p_decision = 'reject' then 'rejected' else 'cancelled' end;
    end if;
    return ops.evaluate_promotion(r.id, p_now);
end;
$$;

-- Roll an environment back to the version deployed before the current one (admins; no checks).
create function ops.rollback_deployment(p_template uuid, p_environment text, p_comment text default '',
                                        p_user uuid default null, p_by text default null)
returns table (version integer, previous_version integer)
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_env uuid;
    v_current ops.deployments;
    v_before ops.deployments;
    v_user uuid := ops.promotion_actor(p_user);
    v_by text;
begin
    select * into t from ops.job_templates x where x.id = p_template for no key update;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'admin');
    select e.id into v_env from ops.environments e where e.project_id = t.project_id and e.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project (dev, staging or prod)', p_environment));
    end if;
    v_current := ops.current_deployment(t.id, v_env);
    select d.* into v_before from ops.deployments d
    where d.template_id = t.id and d.environment_id = v_env and d.id < v_current.id
      and d.version <> v_current.version
    order by d.id desc limit 1;
    if v_before.id is null then
        perform ops.invalid('environment', format('job "%s" has no earlier version deployed to %s to roll back to',
                                                  t.name, p_environment));
    end if;
    select u.email into v_by from ops.users u where u.id = v_user;
    v_by := coalesce(v_by, p_by, nullif(current_setting('lakehouse.actor', true), ''), session_user::text);
    insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, version_id,
                                 previous_version, action, actor, comment)
    values (t.org_id, t.project_id, t.id, v_env, p_environment, v_before.version, v_before.version_id,
            v_current.version, 'rollback', v_by, coalesce(p_comment, ''));
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'deployments', t.id, t.project_id, 'rollback',
            jsonb_build_object('job', t.name, 'environment', p_environment, 'version', v_before.version,
                               'previous_version', v_current.version, 'comment', coalesce(p_comment, '')));
    return query select v_before.version, v_current.version;
end;
$$;

-- An external check's result for a version (operators: CI reports with a person's or a bot's token).
create function ops.report_version_check(p_template uuid, p_version integer, p_name text, p_status text,
                                         p_url text default null, p_summary text default '', p_by text default null)
returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_id bigint;
    v_by text := coalesce((select u.email from ops.users u where u.id = auth.uid()), p_by,
                          nullif(current_setting('lakehouse.actor', true), ''), session_user::text);
begin
    select * into t from ops.job_templates x where x.id = p_template;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'operator');
    if not exists (select 1 from ops.job_template_versions v where v.template_id = t.id and v.version = p_version) then
        perform ops.invalid('version', format('job "%s" has no version %s', t.name, p_version));
    end if;
    if p_status is null or p_status not in ('passed', 'failed', 'pending') then
        perform ops.invalid('status', 'must be passed, failed or pending');
    end if;
    if p_name is null or p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$' then
        perform ops.invalid('name', 'a check name such as pr-gate (letters, digits, _ . : / -)');
    end if;
    if p_url is not null and p_url !~ '^https?://' then
        perform ops.invalid('url', 'must be an http(s) link to the check''s result');
    end if;
    insert into ops.version_check_reports (org_id, project_id, template_id, version, name, status, url, summary,
                                           reported_by)
    values (t.org_id, t.project_id, t.id, p_version, p_name, p_status, p_url, coalesce(p_summary, ''), v_by)
    returning id into v_id;
    -- Pending requests of this version see the report at once.
    perform ops.evaluate_promotion(x.id) from ops.promotion_requests x
    where x.template_id = t.id and x.version = p_version and x.status = 'pending';
    return v_id;
end;
$$;

-- Row-level security ----------------------------------------------------------------------------------

alter table ops.deployments enable row level security;
alter table ops.promotion_requests enable row level security;
alter table ops.promotion_decisions enable row level security;
alter table ops.version_check_reports enable row level security;

grant select on ops.deployments, ops.promotion_requests, ops.promotion_decisions, ops.version_check_reports
    to authenticated;
grant all on ops.deployments, ops.promotion_requests, ops.promotion_decisions, ops.version_check_reports
    to service_role;
grant usage, select on sequence ops.deployments_id_seq, ops.promotion_decisions_id_seq,
    ops.version_check_reports_id_seq to service_role;

create policy deployments_read on ops.deployments for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy promotion_requests_read on ops.promotion_requests for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy promotion_decisions_read on ops.promotion_decisions for select to authenticated
    using (request_id in (select x.id from ops.promotion_requests x));
create policy version_check_reports_read on ops.version_check_reports for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));

revoke execute on function
    ops.guard_promotion_request(), ops.user_project_role(uuid, uuid), ops.promotion_actor(uuid),
    ops.template_version_refusal(uuid, uuid, integer),
    ops.gate_into(uuid, text), ops.current_deployment(uuid, uuid),
    ops.promotion_refusal(uuid, jsonb, uuid, uuid), ops.promotion_checks(ops.promotion_requests, timestamptz),
    ops.evaluate_promotion(uuid, timestamptz), ops.evaluate_pending_promotions(timestamptz, integer, interval),
    ops.request_promotion(uuid, integer, text, text, uuid, text, timestamptz),
    ops.decide_promotion(uuid, text, text, uuid, timestamptz),
    ops.rollback_deployment(uuid, text, text, uuid, text),
    ops.report_version_check(uuid, integer, text, text, text, text, text),
    ops.promotion_decision_refusal(uuid, uuid)
    from public;
-- Signed-in people act through these (each checks the role; the clock is the server's for them).
grant execute on function
    ops.promotion_actor(uuid),
    ops.request_promotion(uuid, integer, text, text, uuid, text, timestamptz),
    ops.decide_promotion(uuid, text, text, uuid, timestamptz),
    ops.rollback_deployment(uuid, text, text, uuid, text),
    ops.report_version_check(uuid, integer, text, text, text, text, text),
    ops.promotion_decision_refusal(uuid, uuid)
    to anon, authenticated;
grant execute on function
    ops.user_project_role(uuid, uuid), ops.promotion_actor(uuid), ops.gate_into(uuid, text),
    ops.template_version_refusal(uuid, uuid, integer),
    ops.current_deployment(uuid, uuid), ops.promotion_refusal(uuid, jsonb, uuid, uuid),
    ops.promotion_checks(ops.promotion_requests, timestamptz), ops.evaluate_promotion(uuid, timestamptz),
    ops.evaluate_pending_promotions(timestamptz, integer, interval),
    ops.request_promotion(uuid, integer, text, text, uuid, text, timestamptz),
    ops.decide_promotion(uuid, text, text, uuid, timestamptz),
    ops.rollback_deployment(uuid, text, text, uuid, text),
    ops.report_version_check(uuid, integer, text, text, text, text, text),
    ops.promotion_decision_refusal(uuid, uuid)
    to service_role;
