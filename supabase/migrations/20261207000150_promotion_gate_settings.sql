-- Promotion gates, two more settings (issue 18):
--
-- * allow_unpromoted_runs: an environment the gate leads into may also run versions other than its
--   deployed one when a run asks for one explicitly (default false: only the deployed version runs;
--   a run that names no version, and every scheduled fire without one, still uses the deployed one).
-- * rollback_approvals: with 0 (the default) a rollback to the previously deployed version is
--   immediate, by a project admin, as before. With N > 0 a rollback opens a promotion request of kind
--   'rollback' (operators may ask): no checks, N approvals by the gate's approvers, never the
--   requester's (four eyes); the rollback is deployed, audited, when the last approval is in.
--
-- ops.promotion_requests.kind tells a rollback request from a promotion; such a request goes from and
-- to the environment it rolls back. One pending request per job and environment still holds: a
-- rollback request supersedes a pending promotion into that environment and the other way round.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

alter table ops.promotion_gates
    add column allow_unpromoted_runs boolean not null default false,
    add column rollback_approvals integer not null default 0 check (rollback_approvals between 0 and 10);

alter table ops.promotion_requests
    add column kind text not null default 'promote' check (kind in ('promote', 'rollback'));

-- Enforcement -------------------------------------------------------------------------------------

-- As in 20261205000200_promotions.sql, except that a gate allowing unpromoted runs lets a run name any
-- version (a run naming none still gets the deployed one).
create or replace function ops.template_version_refusal(p_template uuid, p_environment uuid, p_version integer default null)
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
    if v_gate.allow_unpromoted_runs and p_version is not null then
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

create or replace function ops.resolve_template_version(p_template uuid, p_environment uuid, p_version integer default null)
returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_id uuid;
    v_refusal text := ops.template_version_refusal(p_template, p_environment, p_version);
    v_gate ops.promotion_gates;
begin
    if v_refusal is not null then
        raise exception using errcode = 'LH422', column = 'version', message = v_refusal;
    end if;
    v_gate := ops.gate_into(p_template, (select e.name from ops.environments e where e.id = p_environment));
    if v_gate.id is not null and not (v_gate.allow_unpromoted_runs and p_version is not null) then
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

-- Requests carry the gate they were opened under, with its new settings; a rollback runs no check tasks.
create or replace function ops.promotion_request_gate_extras() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    select new.gate || jsonb_build_object(
               'check_tasks', case when new.kind = 'rollback' then '[]'::jsonb else g.check_tasks end,
               'notify', to_jsonb(g.notify),
               'allow_unpromoted_runs', g.allow_unpromoted_runs,
               'rollback_approvals', g.rollback_approvals)
    into new.gate
    from ops.promotion_gates g where g.id = new.gate_id;
    new.gate := coalesce(new.gate, '{}');
    return new;
end;
$$;

-- Evaluation --------------------------------------------------------------------------------------------

-- A rollback request (its row locked by the caller): no checks; deployed, as a rollback, once the
-- gate's rollback approvals (copied as required_approvals) are in under the current epoch.
create function ops.evaluate_rollback_request(r ops.promotion_requests, p_now timestamptz) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_approvals integer;
    v_env uuid;
    v_current ops.deployments;
    v_actor text := coalesce(nullif(current_setting('lakehouse.actor', true), ''), 'promotion gates');
begin
    update ops.promotion_requests x
    set checks = '[]', checks_passed = true, evidence_fingerprint = 'rollback', evaluated_at = p_now,
        updated_at = now()
    where x.id = r.id;
    select count(distinct d.actor_id) into v_approvals from ops.promotion_decisions d
    where d.request_id = r.id and d.decision = 'approve' and d.evidence_epoch = r.evidence_epoch;
    if v_approvals < coalesce((r.gate ->> 'required_approvals')::integer, 0) then
        return 'pending';
    end if;
    select e.id into v_env from ops.environments e where e.project_id = r.project_id and e.name = r.to_environment;
    v_current := ops.current_deployment(r.template_id, v_env);
    insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, version_id,
                                 previous_version, action, promotion_id, actor, comment)
    values (r.org_id, r.project_id, r.template_id, v_env, r.to_environment, r.version, r.version_id,
            v_current.version, 'rollback', r.id, r.requested_by, r.comment);
    update ops.promotion_requests x
    set status = 'promoted', decided_at = p_now, decided_by = v_actor, updated_at = now(),
        outcome = format('rolled back to v%s in %s (was v%s): %s approval%s', r.version, r.to_environment,
                         coalesce(v_current.version::text, 'none'), v_approvals,
                         case when v_approvals = 1 then '' else 's' end)
    where x.id = r.id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status, detail)
    values (v_actor, 'promotion_requests', r.id, r.project_id, 'rollback', 'pending', 'promoted',
            jsonb_build_object('template_id', r.template_id, 'version', r.version, 'environment', r.to_environment,
                               'previous_version', v_current.version, 'approvals', v_approvals));
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (r.requested_by, 'deployments', r.template_id, r.project_id, 'rollback',
            jsonb_build_object('environment', r.to_environment, 'version', r.version,
                               'previous_version', v_current.version, 'comment', r.comment,
                               'request_id', r.id, 'approvals', v_approvals));
    return 'promoted';
end;
$$;

-- As in 20261207000100_promotion_check_runs_notices.sql, plus rollback requests (evaluated above).
create or replace function ops.evaluate_promotion(p_request uuid, p_now timestamptz default now()) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    r ops.promotion_requests;
    v_checks jsonb;
    v_basis text;
    v_fingerprint text;
    v_passed boolean;
    v_epoch integer;
    v_approvals integer;
    v_env uuid;
    v_current ops.deployments;
    v_actor text := coalesce(nullif(current_setting('lakehouse.actor', true), ''), 'promotion gates');
    v_tasks jsonb;
    v_job text;
    v_run ops.runs;
    v_failed text;
    v_check_passed boolean;
begin
    select * into r from ops.promotion_requests x where x.id = p_request for update;
    if not found or r.status <> 'pending' then
        return r.status;
    end if;
    if r.kind = 'rollback' then
        return ops.evaluate_rollback_request(r, p_now);
    end if;
    select c.checks, c.fingerprint into v_checks, v_basis from ops.promotion_checks(r, p_now) c;
    v_fingerprint := v_basis;
    v_tasks := coalesce(r.gate -> 'check_tasks', '[]');
    if jsonb_typeof(v_tasks) = 'array' and jsonb_array_length(v_tasks) > 0 then
        select t.name into v_job from ops.job_templates t where t.id = r.template_id;
        if r.check_run_basis is distinct from v_basis then
            select s.run_id, s.refusal into r.check_run_id, r.check_run_refusal
            from ops.promotion_check_run(r, v_job, v_tasks) s;
        end if;
        select * into v_run from ops.runs x where x.id = r.check_run_id;
        v_check_passed := coalesce(v_run.status = 'succeeded', false);
        select string_agg(format('%s %s', t.key, t.status), ', ' order by t.key) into v_failed
        from ops.tasks t where t.run_id = v_run.id and t.status in ('failed', 'timed_out', 'cancelled');
        v_checks := v_checks || jsonb_build_array(jsonb_build_object(
            'name', 'check_run',
            'label', format('check tasks (%s) succeed in a run in %s',
                            (select string_agg(x ->> 'key', ', ') from jsonb_array_elements(v_tasks) x), r.to_environment),
            'passed', v_check_passed,
            'summary', case when v_run.id is null then 'not submitted: ' || coalesce(r.check_run_refusal, 'unknown reason')
                            when v_run.status = 'succeeded' then 'run succeeded'
                            when v_run.status in ('queued', 'running') then format('run %s', v_run.status)
                            else format('run %s%s', v_run.status, coalesce(': ' || v_failed, '')) end,
            'evidence', case when v_run.id is null then '[]'::jsonb
                             else jsonb_build_array(jsonb_build_object('kind', 'run', 'id', v_run.id,
                                  'label', format('check run · %s', v_run.status))) end));
        v_fingerprint := md5(v_basis || '|check_run|' || coalesce(v_run.id::text, 'none') || '|' || v_check_passed);
    end if;
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
        evaluated_at = p_now, updated_at = now(), check_run_id = r.check_run_id,
        check_run_basis = case when jsonb_array_length(v_tasks) > 0 then v_basis end,
        check_run_refusal = r.check_run_refusal
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

-- Rollback ------------------------------------------------------------------------------------------------

-- Roll an environment back to the version deployed before the current one. No checks. When the gate
-- into the environment asks for rollback approvals, this opens a rollback request (operators; the
-- approvers are told in the app, and by the promotion loop through the alert channels) and returns its
-- id with status 'pending'; otherwise the rollback is deployed at once (admins), status 'rolled_back'.
drop function ops.rollback_deployment(uuid, text, text, uuid, text);
create function ops.rollback_deployment(p_template uuid, p_environment text, p_comment text default '',
                                        p_user uuid default null, p_by text default null)
returns table (version integer, previous_version integer, request_id uuid, status text)
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_env uuid;
    v_current ops.deployments;
    v_before ops.deployments;
    v_gate ops.promotion_gates;
    v_gate_json jsonb;
    v_user uuid := ops.promotion_actor(p_user);
    v_by text;
    v_id uuid;
begin
    select * into t from ops.job_templates x where x.id = p_template for no key update;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    v_gate := ops.gate_into(t.id, p_environment);
    perform ops.require_project_role(t.project_id,
                                     case when coalesce(v_gate.rollback_approvals, 0) > 0 then 'operator' else 'admin' end);
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
    if coalesce(v_gate.rollback_approvals, 0) > 0 then
        v_gate_json := jsonb_build_object('id', v_gate.id, 'name', v_gate.name, 'from_environment', p_environment,
            'to_environment', p_environment, 'min_successful_runs', 0, 'window_days', v_gate.window_days,
            'required_approvals', v_gate.rollback_approvals, 'approvers', to_jsonb(v_gate.approvers),
            'required_checks', '[]'::jsonb);
        update ops.promotion_requests x
        set status = 'superseded', decided_at = now(), decided_by = v_by, updated_at = now(),
            outcome = format('superseded by a rollback to v%s', v_before.version)
        where x.template_id = t.id and x.to_environment = p_environment and x.status = 'pending';
        insert into ops.promotion_requests (org_id, project_id, template_id, version, version_id, from_environment,
                                            to_environment, gate_id, gate, requested_by, requested_by_id, comment, kind)
        values (t.org_id, t.project_id, t.id, v_before.version, v_before.version_id, p_environment, p_environment,
                v_gate.id, v_gate_json, v_by, v_user, coalesce(p_comment, ''), 'rollback')
        returning id into v_id;
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, new_status, detail)
        values (v_by, 'promotion_requests', v_id, t.project_id, 'request_rollback', 'pending',
                jsonb_build_object('template_id', t.id, 'job', t.name, 'version', v_before.version,
                                   'previous_version', v_current.version, 'environment', p_environment,
                                   'gate', v_gate.name, 'comment', coalesce(p_comment, '')));
        insert into ops.notifications (org_id, user_id, severity, title, body, link)
        select t.org_id, u.id, 'warning',
               format('Rollback of %s in %s to v%s awaits your approval', t.name, p_environment, v_before.version),
               format('%s asks to roll %s in %s back from v%s to v%s (gate %s).', v_by, t.name, p_environment,
                      v_current.version, v_before.version, v_gate.name),
               '/promotions/' || v_id
        from ops.users u
        where u.is_active and u.id is distinct from v_user
          and ops.promotion_refusal(t.project_id, v_gate_json, u.id, v_user) is null;
        perform ops.evaluate_promotion(v_id);
        return query select v_before.version, v_current.version, v_id, 'pending'::text;
        return;
    end if;
    insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, version_id,
                                 previous_version, action, actor, comment)
    values (t.org_id, t.project_id, t.id, v_env, p_environment, v_before.version, v_before.version_id,
            v_current.version, 'rollback', v_by, coalesce(p_comment, ''));
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'deployments', t.id, t.project_id, 'rollback',
            jsonb_build_object('job', t.name, 'environment', p_environment, 'version', v_before.version,
                               'previous_version', v_current.version, 'comment', coalesce(p_comment, '')));
    return query select v_before.version, v_current.version, null::uuid, 'rolled_back'::text;
end;
$$;

revoke execute on function
    ops.evaluate_rollback_request(ops.promotion_requests, timestamptz),
    ops.rollback_deployment(uuid, text, text, uuid, text)
    from public;
grant execute on function ops.rollback_deployment(uuid, text, text, uuid, text) to anon, authenticated;
grant execute on function
    ops.evaluate_rollback_request(ops.promotion_requests, timestamptz),
    ops.rollback_deployment(uuid, text, text, uuid, text)
    to service_role;
