-- Promotion gates, continued (issue 18): custom checks run as a task, and approvers notified through
-- the alert channels.
--
-- * A gate may name check tasks (ops.promotion_gates.check_tasks: bundle task templates, e.g. a data
--   quality suite or a smoke test). When a request opens, and again whenever the rest of its evidence
--   changes, the control plane submits them as one real run in the target environment through
--   ops.submit_run (so caps apply at submit and routing at claim), records the run on the request
--   (check_run_id; check_run_basis is the evidence it was run for) and the check "check_run" passes
--   iff that run succeeded. A refusal (a cap, an invalid spec) is recorded and fails the check until
--   the evidence changes. A run made stale by new evidence is cancelled.
-- * ops.promotion_notices: one row per request event (opened, promoted, rejected, cancelled,
--   superseded). The promotion loop plans each event's messages in the transaction that inserts its
--   notice, into the alert deliveries outbox (ops.alert_deliveries, now keyed by an incident event or a
--   promotion notice) and the bell; the unique (request, event) makes that exactly once across
--   replicas (DESIGN decision 8). The deliveries sender sends them as it sends alerts.
--   Gates name extra targets in `notify` (as alert rules do: e-mail, slack:<channel>, webhook:<channel>).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

alter table ops.promotion_gates
    add column check_tasks jsonb not null default '[]' check (jsonb_typeof(check_tasks) = 'array'),
    add column notify text[] not null default '{}';

alter table ops.promotion_requests
    add column check_run_id uuid references ops.runs (id),
    add column check_run_basis text,
    add column check_run_refusal text;

-- Only the outcome of a request moves; its check run is part of that evaluation.
create or replace function ops.guard_promotion_request() returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_moving text[] := array['status', 'checks', 'checks_passed', 'evidence_fingerprint', 'evidence_epoch',
                             'evaluated_at', 'decided_at', 'decided_by', 'outcome', 'updated_at',
                             'check_run_id', 'check_run_basis', 'check_run_refusal'];
begin
    if (to_jsonb(new) - v_moving) is distinct from (to_jsonb(old) - v_moving) then
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

-- A request is judged by the gate it was opened under: its check tasks and notify targets too.
create function ops.promotion_request_gate_extras() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    select new.gate || jsonb_build_object('check_tasks', g.check_tasks, 'notify', to_jsonb(g.notify))
    into new.gate
    from ops.promotion_gates g where g.id = new.gate_id;
    new.gate := coalesce(new.gate, '{}');
    return new;
end;
$$;

create trigger promotion_requests_gate_extras before insert on ops.promotion_requests
    for each row execute function ops.promotion_request_gate_extras();

-- Evaluation with the check run -----------------------------------------------------------------------

-- As in 20261205000200_promotions.sql, plus the gate's check tasks: (re)submitted when the evidence the
-- run was made for changed, and a check that passes iff the run succeeded.
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

-- Submit a request's check tasks as a run in its target environment (the normal submit path: caps,
-- the run-spec contract; routing when claimed), cancelling the run made for older evidence. Returns
-- the run, or why none was made. Called by ops.evaluate_promotion under the request's row lock, so
-- one evaluation submits once.
create function ops.promotion_check_run(r ops.promotion_requests, p_job text, p_tasks jsonb,
                                        out run_id uuid, out refusal text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_spec jsonb;
    v_actor text := coalesce(nullif(current_setting('lakehouse.actor', true), ''), 'promotion gates');
begin
    if r.check_run_id is not null then
        perform ops.cancel_run(r.check_run_id, 'promotion gates: the evidence changed, checks run again')
        from ops.runs x where x.id = r.check_run_id and x.status in ('queued', 'running');
    end if;
    v_spec := jsonb_build_object(
        'name', format('promotion check: %s v%s to %s', p_job, r.version, r.to_environment),
        'tasks', (select jsonb_agg(coalesce(x.task -> 'config', '{}') || (x.task - 'config') order by x.n)
                  from jsonb_array_elements(p_tasks) with ordinality as x(task, n)));
    begin
        select s.run_id, s.refusal into run_id, refusal
        from ops.submit_run(r.project_id, r.to_environment, v_spec,
                            jsonb_build_object('job', p_job, 'version', r.version, 'from_environment',
                                               r.from_environment, 'to_environment', r.to_environment,
                                               'promotion_request', r.id),
                            'promotion', r.requested_by_id, r.requested_by, null, 0,
                            array['promotion-check']) s;
    exception when others then
        run_id := null;
        refusal := sqlerrm;
    end;
    if run_id is null then
        refusal := coalesce(refusal, 'not submitted');
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_actor, 'promotion_requests', r.id, r.project_id, 'check_run',
            jsonb_build_object('run_id', run_id, 'refusal', refusal, 'environment', r.to_environment));
end;
$$;

-- A request that is rejected, cancelled or superseded no longer needs its check run.
create function ops.cancel_request_check_run() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    if old.status = 'pending' and new.status in ('rejected', 'cancelled', 'superseded') and new.check_run_id is not null then
        begin
            perform ops.cancel_run(new.check_run_id, format('promotion gates: the request was %s', new.status))
            from ops.runs x where x.id = new.check_run_id and x.status in ('queued', 'running');
        exception when sqlstate 'LH403' then
            null;  -- a decider without the operator role on the project leaves the run to finish
        end;
    end if;
    return null;
end;
$$;

create trigger promotion_requests_cancel_check_run after update of status on ops.promotion_requests
    for each row execute function ops.cancel_request_check_run();

-- Notices: each request event's messages, planned once ------------------------------------------------

create table ops.promotion_notices (
    id bigserial primary key,
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    request_id uuid not null references ops.promotion_requests (id),
    event text not null check (event in ('opened', 'promoted', 'rejected', 'cancelled', 'superseded')),
    -- false: recorded without messages (events from before notices existed, or an opening seen only
    -- once the request was decided)
    planned boolean not null default true,
    created_at timestamptz not null default now(),
    unique (request_id, event)
);
create index promotion_notices_org on ops.promotion_notices (org_id);
create trigger promotion_notices_append_only before update or delete on ops.promotion_notices
    for each row execute function ops.refuse_change();
create trigger promotion_notices_no_truncate before truncate on ops.promotion_notices
    for each statement execute function ops.refuse_change();

-- The outbox carries promotion messages too: a delivery belongs to an incident event or to a notice.
alter table ops.alert_deliveries
    alter column incident_id drop not null,
    alter column event_id drop not null,
    add column promotion_notice_id bigint references ops.promotion_notices (id),
    add constraint alert_deliveries_one_source check ((event_id is null) <> (promotion_notice_id is null)),
    add constraint alert_deliveries_incident_event check ((incident_id is null) = (event_id is null));
create unique index alert_deliveries_promotion on ops.alert_deliveries (promotion_notice_id, channel, target)
    where promotion_notice_id is not null;

alter table ops.notifications add column promotion_notice_id bigint references ops.promotion_notices (id);
create unique index notifications_promotion on ops.notifications (user_id, promotion_notice_id)
    where promotion_notice_id is not null;

-- Events that happened before notices existed are not announced now.
insert into ops.promotion_notices (org_id, project_id, request_id, event, planned)
select x.org_id, x.project_id, x.id, 'opened', false from ops.promotion_requests x;
insert into ops.promotion_notices (org_id, project_id, request_id, event, planned)
select x.org_id, x.project_id, x.id, x.status, false from ops.promotion_requests x where x.status <> 'pending';

-- Record a request event's notice; its id when this call recorded it (then plan its messages in the
-- same transaction), null when it was recorded before (by another replica, or earlier).
create function ops.open_promotion_notice(p_request uuid, p_event text, p_planned boolean default true)
returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id bigint;
begin
    perform ops.require_trusted_caller();
    insert into ops.promotion_notices (org_id, project_id, request_id, event, planned)
    select x.org_id, x.project_id, x.id, p_event, p_planned from ops.promotion_requests x where x.id = p_request
    on conflict (request_id, event) do nothing
    returning id into v_id;
    return v_id;
end;
$$;

-- Queue one message of a notice (idempotent per notice, channel and target).
create function ops.enqueue_promotion_delivery(
    p_notice bigint, p_channel text, p_target text, p_payload jsonb, p_user uuid default null,
    p_not_before timestamptz default now(), p_held_reason text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_trusted_caller();
    insert into ops.alert_deliveries (org_id, promotion_notice_id, channel, target, user_id, payload,
                                      next_attempt_at, held_reason)
    select n.org_id, n.id, p_channel, p_target, p_user, p_payload, p_not_before, p_held_reason
    from ops.promotion_notices n where n.id = p_notice
    on conflict (promotion_notice_id, channel, target) where promotion_notice_id is not null do nothing
    returning id into v_id;
    return v_id;
end;
$$;

-- A bell notification of a notice (once per person).
create function ops.add_promotion_notification(
    p_notice bigint, p_user uuid, p_severity text, p_title text, p_body text, p_link text
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_trusted_caller();
    insert into ops.notifications (org_id, user_id, promotion_notice_id, severity, title, body, link)
    select n.org_id, p_user, n.id, p_severity, p_title, p_body, p_link
    from ops.promotion_notices n where n.id = p_notice
    on conflict (user_id, promotion_notice_id) where promotion_notice_id is not null do nothing
    returning id into v_id;
    return v_id;
end;
$$;

-- Row-level security ----------------------------------------------------------------------------------

alter table ops.promotion_notices enable row level security;
grant select on ops.promotion_notices to authenticated;
grant all on ops.promotion_notices to service_role;
grant usage, select on sequence ops.promotion_notices_id_seq to service_role;
create policy promotion_notices_read on ops.promotion_notices for select to authenticated
    using (ops.org_role(org_id) is not null or ops.has_project_role(project_id, 'viewer'));
create policy alert_deliveries_promotion_read on ops.alert_deliveries for select to authenticated
    using (promotion_notice_id in (select n.id from ops.promotion_notices n));

revoke execute on function
    ops.promotion_request_gate_extras(), ops.cancel_request_check_run(),
    ops.promotion_check_run(ops.promotion_requests, text, jsonb),
    ops.open_promotion_notice(uuid, text, boolean),
    ops.enqueue_promotion_delivery(bigint, text, text, jsonb, uuid, timestamptz, text),
    ops.add_promotion_notification(bigint, uuid, text, text, text, text)
    from public;
grant execute on function
    ops.promotion_check_run(ops.promotion_requests, text, jsonb),
    ops.open_promotion_notice(uuid, text, boolean),
    ops.enqueue_promotion_delivery(bigint, text, text, jsonb, uuid, timestamptz, text),
    ops.add_promotion_notification(bigint, uuid, text, text, text, text)
    to service_role;
