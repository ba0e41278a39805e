-- Alerts that fire (issue 20): more rule kinds, incidents (one open per rule and subject, with a
-- count), their timeline, a deliveries outbox, in-app notifications, per-user preferences and job
-- mutes; a NOTIFY when a task or run ends so the evaluator never polls the events table.
--
-- Exactly once across replicas (DESIGN decision 8): a firing is the row of
-- ops.alert_incident_events keyed by (rule, subject, window); a delivery is keyed by (event,
-- channel, target). Any number of evaluators may fire the same signal: one row wins.
--
-- RLS (DESIGN decision 7): every table carries org_id; `authenticated` may SELECT at most; writes go
-- through the SECURITY DEFINER functions below (trusted callers: the API and the loops; end users
-- only where the function checks their role).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- Rule kinds ----------------------------------------------------------------------------------------

-- New kinds and their optional settings; every new column has a default or is nullable, so rules
-- written before (and bundles without the fields) keep their meaning.
--   run_duration: threshold seconds, or factor x the job's p95 over its last baseline_runs runs
--   sla: the job has not succeeded by sla_time (local time of day in sla_timezone)
--   cap_breach: a refusal, or usage over cap_percent of a cap's limit
--   schedule_missed: a schedule fire that was missed or skipped
--   dataset_freshness: dataset_name not written for threshold seconds
--   event_match: an event of event_type at event_level or above whose data contains event_attributes
alter table ops.alert_rules drop constraint alert_rules_kind_check;
alter table ops.alert_rules drop constraint alert_rules_check;
alter table ops.alert_rules
    add constraint alert_rules_kind_check check (kind in (
        'run_failed', 'task_failed', 'run_duration', 'queue_wait', 'cap_breach', 'executor_offline',
        'sla', 'schedule_missed', 'dataset_freshness', 'event_match')),
    add column factor double precision check (factor is null or factor > 0),
    add column baseline_runs integer not null default 20 check (baseline_runs between 2 and 1000),
    add column sla_time time,
    add column sla_timezone text not null default 'UTC',
    add column cap_percent integer check (cap_percent is null or cap_percent between 1 and 1000),
    add column match_pool text,
    add column event_type text check (event_type is null or event_type ~ '^[a-z][a-z0-9_.]{0,60}$'),
    add column event_level text check (event_level is null or event_level in ('debug', 'info', 'warning', 'error')),
    add column event_attributes jsonb not null default '{}' check (jsonb_typeof(event_attributes) = 'object'),
    add column dataset_name text,
    add column escalate_after_s integer not null default 900 check (escalate_after_s > 0),
    add constraint alert_rules_threshold_needed check (
        (kind not in ('queue_wait', 'dataset_freshness') or threshold is not null)
        and (kind <> 'run_duration' or threshold is not null or factor is not null)
        and (kind <> 'sla' or sla_time is not null)
        and (kind <> 'event_match' or event_type is not null)
        and (kind <> 'dataset_freshness' or dataset_name is not null));

-- Named delivery channels of an org: bundle `alert_channels`. Secrets are references to
-- environment variables of the control room (url_env, secret_env), never stored values.
create table ops.alert_channels (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind text not null check (kind in ('slack', 'webhook', 'email')),
    url_env text check (url_env is null or url_env ~ '^[A-Z][A-Z0-9_]{0,127}$'),
    secret_env text check (secret_env is null or secret_env ~ '^[A-Z][A-Z0-9_]{0,127}$'),
    address text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name),
    check (kind = 'email' or url_env is not null),
    check (kind <> 'email' or address is not null)
);

-- Incidents ---------------------------------------------------------------------------------------

-- subject: what the incident is about ("job:<project>/<name>", "task:<job>/<key>", "run:<id>",
-- "executor:<id>", "pool:<name>", "cap:<id>", "schedule:<id>", "dataset:<id>").
create table ops.alert_incidents (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    rule_id uuid not null references ops.alert_rules (id) on delete cascade,
    subject text not null check (length(subject) between 1 and 500),
    job text,
    project_id uuid references ops.projects (id),
    run_id uuid references ops.runs (id),
    task_id uuid references ops.tasks (id),
    route_rule_id uuid,
    severity text not null check (severity in ('info', 'warning', 'critical')),
    state text not null default 'open' check (state in ('open', 'acked', 'resolved')),
    title text not null,
    summary text not null default '',
    count integer not null default 1 check (count >= 1),
    first_fired_at timestamptz not null,
    last_fired_at timestamptz not null,
    acked_at timestamptz,
    acked_by text,
    snoozed_until timestamptz,
    resolved_at timestamptz,
    resolved_by text,
    escalation_level integer not null default 0 check (escalation_level >= 0),
    next_escalation_at timestamptz,
    detail jsonb not null default '{}' check (jsonb_typeof(detail) = 'object'),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- One open (or acked) incident per rule and subject: repeated firings count on it.
create unique index alert_incidents_one_open on ops.alert_incidents (rule_id, subject) where state <> 'resolved';
create index alert_incidents_org_state on ops.alert_incidents (org_id, state, last_fired_at desc);
create index alert_incidents_escalation on ops.alert_incidents (next_escalation_at)
    where state = 'open' and next_escalation_at is not null;

-- The timeline. A firing's (rule, subject, window) is unique: the same signal seen by two
-- evaluators fires once.
create table ops.alert_incident_events (
    id bigserial primary key,
    org_id uuid not null references ops.orgs (id),
    incident_id uuid not null references ops.alert_incidents (id) on delete cascade,
    kind text not null check (kind in ('fired', 'refired', 'escalated', 'acked', 'snoozed', 'resolved', 'muted')),
    rule_id uuid not null,
    subject text not null,
    window_key text,
    at timestamptz not null default now(),
    actor text not null default 'evaluator',
    detail jsonb not null default '{}' check (jsonb_typeof(detail) = 'object'),
    check ((kind in ('fired', 'refired')) = (window_key is not null))
);
create unique index alert_incident_events_firing on ops.alert_incident_events (rule_id, subject, window_key)
    where window_key is not null;
create index alert_incident_events_incident on ops.alert_incident_events (incident_id, id);

-- Deliveries outbox -------------------------------------------------------------------------------

-- One row per (event, channel, target). A sender claims due rows with SKIP LOCKED and pushes
-- next_attempt_at ahead while it sends, so a crashed sender's row comes back; failures back off
-- exponentially until max attempts, then the row is dead (kept: the incident's deliveries log).
create table ops.alert_deliveries (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    incident_id uuid not null references ops.alert_incidents (id) on delete cascade,
    event_id bigint not null references ops.alert_incident_events (id) on delete cascade,
    channel text not null check (channel in ('email', 'slack', 'webhook')),
    target text not null check (length(target) between 1 and 2000),
    user_id uuid,
    payload jsonb not null check (jsonb_typeof(payload) = 'object'),
    state text not null default 'pending' check (state in ('pending', 'sent', 'dead')),
    attempts integer not null default 0 check (attempts >= 0),
    max_attempts integer not null default 8 check (max_attempts between 1 and 100),
    next_attempt_at timestamptz not null default now(),
    last_error text,
    held_reason text,
    created_at timestamptz not null default now(),
    sent_at timestamptz,
    unique (event_id, channel, target)
);
create index alert_deliveries_due on ops.alert_deliveries (next_attempt_at) where state = 'pending';
create index alert_deliveries_incident on ops.alert_deliveries (incident_id, created_at);

-- In-app notifications (the bell) -------------------------------------------------------------------

create table ops.notifications (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    user_id uuid not null references ops.users (id) on delete cascade,
    incident_id uuid references ops.alert_incidents (id) on delete cascade,
    event_id bigint references ops.alert_incident_events (id) on delete cascade,
    severity text not null check (severity in ('info', 'warning', 'critical')),
    title text not null,
    body text not null default '',
    link text,
    created_at timestamptz not null default now(),
    read_at timestamptz,
    unique (user_id, event_id)
);
create index notifications_unread on ops.notifications (user_id, created_at desc) where read_at is null;
create index notifications_user on ops.notifications (user_id, created_at desc);

-- Preferences and mutes -------------------------------------------------------------------------------

-- A user's own choices per org. Only the user writes them (ops.put_notification_preferences):
-- an admin may read them but cannot silence another user's critical pages.
create table ops.notification_preferences (
    org_id uuid not null references ops.orgs (id),
    user_id uuid not null references ops.users (id) on delete cascade,
    channels text[] not null default '{email,in_app}'
        check (channels <@ array['email', 'in_app', 'webhook']::text[]),
    webhook_url text check (webhook_url is null or webhook_url ~ '^https?://'),
    min_severity text not null default 'info' check (min_severity in ('info', 'warning', 'critical')),
    quiet_start time,
    quiet_end time,
    timezone text not null default 'UTC',
    critical_overrides_quiet boolean not null default true,
    digest_info boolean not null default false,
    subscribed_jobs text[] not null default '{}',
    subscribed_projects uuid[] not null default '{}',
    muted_jobs text[] not null default '{}',
    updated_at timestamptz not null default now(),
    primary key (org_id, user_id),
    check ((quiet_start is null) = (quiet_end is null))
);

-- A job muted for everyone in the org (until a time, or until unmuted).
create table ops.alert_mutes (
    org_id uuid not null references ops.orgs (id),
    job text not null,
    until timestamptz,
    muted_by text not null,
    created_at timestamptz not null default now(),
    primary key (org_id, job)
);

-- NOTIFY on terminal transitions ----------------------------------------------------------------------

-- Payload "task:<id>" or "run:<id>"; NOTIFY is delivered at commit, so the evaluator reads
-- committed rows.
create function ops.notify_alert_signal() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.status is distinct from old.status
       and new.status in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost') then
        perform pg_notify('lakehouse_alerts', (case tg_table_name when 'tasks' then 'task:' else 'run:' end) || new.id);
    end if;
    return null;
end;
$$;

create trigger tasks_notify_alert after update of status on ops.tasks
    for each row execute function ops.notify_alert_signal();
create trigger runs_notify_alert after update of status on ops.runs
    for each row execute function ops.notify_alert_signal();

-- Functions ---------------------------------------------------------------------------------------

create function ops.require_trusted_caller() returns void
language plpgsql stable
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() then
        raise exception using errcode = 'LH403', message = 'permission denied: only the control room may do this';
    end if;
end;
$$;

-- Fire (rule, subject, window): opens an incident or counts on the open one. Returns the new
-- event, or nothing when this window already fired (another replica, or a replay).
create function ops.fire_alert(
    p_rule uuid, p_subject text, p_window text, p_at timestamptz, p_title text, p_summary text,
    p_detail jsonb default '{}', p_project uuid default null, p_run uuid default null,
    p_task uuid default null, p_job text default null, p_route_rule uuid default null
) returns table (incident_id uuid, event_id bigint, event_kind text, snoozed boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_rule ops.alert_rules;
    v_incident ops.alert_incidents;
    v_event bigint;
    v_kind text;
begin
    perform ops.require_trusted_caller();
    select * into v_rule from ops.alert_rules r where r.id = p_rule;
    if v_rule.id is null then
        perform ops.invalid('rule_id', format('alert rule %s does not exist', p_rule));
    end if;
    -- Serialise firings of one (rule, subject): the open-incident lookup and insert are one step.
    perform pg_advisory_xact_lock(hashtextextended(p_rule::text || '/' || p_subject, 20));
    if exists (select 1 from ops.alert_incident_events e
               where e.rule_id = p_rule and e.subject = p_subject and e.window_key = p_window) then
        return;
    end if;
    select * into v_incident from ops.alert_incidents i
    where i.rule_id = p_rule and i.subject = p_subject and i.state <> 'resolved' for update;
    if v_incident.id is null then
        insert into ops.alert_incidents (org_id, rule_id, subject, job, project_id, run_id, task_id, route_rule_id,
            severity, title, summary, first_fired_at, last_fired_at, next_escalation_at, detail)
        values (v_rule.org_id, p_rule, p_subject, p_job, p_project, p_run, p_task, p_route_rule,
            v_rule.severity, p_title, coalesce(p_summary, ''), p_at, p_at,
            case when v_rule.escalate then p_at + make_interval(secs => v_rule.escalate_after_s) end,
            coalesce(p_detail, '{}'))
        returning * into v_incident;
        v_kind := 'fired';
    else
        update ops.alert_incidents i set count = i.count + 1, last_fired_at = greatest(i.last_fired_at, p_at),
            run_id = coalesce(p_run, i.run_id), task_id = coalesce(p_task, i.task_id),
            summary = coalesce(p_summary, i.summary), updated_at = now()
        where i.id = v_incident.id returning * into v_incident;
        v_kind := 'refired';
    end if;
    insert into ops.alert_incident_events (org_id, incident_id, kind, rule_id, subject, window_key, at, detail)
    values (v_rule.org_id, v_incident.id, v_kind, p_rule, p_subject, p_window, p_at, coalesce(p_detail, '{}'))
    returning id into v_event;
    return query select v_incident.id, v_event, v_kind,
        coalesce(v_incident.snoozed_until > p_at, false);
end;
$$;

-- Resolve the open incident of (rule, subject) when its condition cleared; the resolved event, or nothing.
create function ops.resolve_alert(p_rule uuid, p_subject text, p_at timestamptz, p_by text, p_reason text)
returns table (incident_id uuid, event_id bigint)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_incident ops.alert_incidents;
    v_event bigint;
begin
    perform ops.require_trusted_caller();
    update ops.alert_incidents i set state = 'resolved', resolved_at = p_at, resolved_by = p_by,
        next_escalation_at = null, updated_at = now()
    where i.rule_id = p_rule and i.subject = p_subject and i.state <> 'resolved'
    returning * into v_incident;
    if v_incident.id is null then
        return;
    end if;
    insert into ops.alert_incident_events (org_id, incident_id, kind, rule_id, subject, at, actor, detail)
    values (v_incident.org_id, v_incident.id, 'resolved', p_rule, p_subject, p_at, p_by,
            jsonb_build_object('reason', p_reason))
    returning id into v_event;
    return query select v_incident.id, v_event;
end;
$$;

-- An operator's action on an incident: ack, snooze (until a time) or resolve. p_user is the acting
-- user (checked as operator of the incident's project, or of the org for org-wide incidents).
create function ops.act_on_incident(
    p_incident uuid, p_action text, p_user uuid, p_actor text, p_until timestamptz default null,
    p_at timestamptz default now()
) returns table (state text, event_id bigint)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_incident ops.alert_incidents;
    v_event bigint;
    v_role text;
begin
    if p_action not in ('ack', 'snooze', 'resolve') then
        perform ops.invalid('action', 'must be one of ack, snooze, resolve');
    end if;
    select * into v_incident from ops.alert_incidents i where i.id = p_incident for update;
    if v_incident.id is null then
        raise exception using errcode = 'LH404', message = format('incident %s does not exist', p_incident);
    end if;
    if ops.caller_is_end_user() and p_user is distinct from auth.uid() then
        raise exception using errcode = 'LH403', message = 'permission denied: act on incidents as yourself';
    end if;
    if p_user is not null then
        select role into v_role from (
            select om.role from ops.org_members om where om.org_id = v_incident.org_id and om.user_id = p_user
            union all
            select pm.role from ops.project_members pm
            where pm.project_id = v_incident.project_id and pm.user_id = p_user
        ) roles order by ops.role_rank(role) desc limit 1;
        if ops.role_rank(v_role) < ops.role_rank('operator') then
            raise exception using errcode = 'LH403',
                message = format('permission denied: the operator role is needed to %s incident %s', p_action, p_incident);
        end if;
    end if;
    if v_incident.state = 'resolved' then
        raise exception using errcode = 'LH409', message = format('incident %s is already resolved', p_incident);
    end if;
    if p_action = 'snooze' and (p_until is null or p_until <= p_at) then
        perform ops.invalid('until', 'snooze needs a time in the future');
    end if;
    update ops.alert_incidents i set
        state = case p_action when 'ack' then 'acked' when 'resolve' then 'resolved' else i.state end,
        acked_at = case when p_action = 'ack' then p_at else i.acked_at end,
        acked_by = case when p_action = 'ack' then p_actor else i.acked_by end,
        snoozed_until = case when p_action = 'snooze' then p_until else i.snoozed_until end,
        resolved_at = case when p_action = 'resolve' then p_at else i.resolved_at end,
        resolved_by = case when p_action = 'resolve' then p_actor else i.resolved_by end,
        next_escalation_at = case when p_action = 'snooze' then p_until
                                  when p_action in ('ack', 'resolve') then null else i.next_escalation_at end,
        updated_at = now()
    where i.id = p_incident returning * into v_incident;
    insert into ops.alert_incident_events (org_id, incident_id, kind, rule_id, subject, at, actor, detail)
    values (v_incident.org_id, v_incident.id,
            case p_action when 'ack' then 'acked' when 'snooze' then 'snoozed' else 'resolved' end,
            v_incident.rule_id, v_incident.subject, p_at, p_actor,
            case when p_until is not null then jsonb_build_object('until', p_until) else '{}'::jsonb end)
    returning id into v_event;
    return query select v_incident.state, v_event;
end;
$$;

-- Escalate every open, unacknowledged incident whose delay passed: one level up the routing owner's
-- chain; the evaluator sends to the new level's target. Returns the escalations made.
create function ops.escalate_incidents(p_now timestamptz)
returns table (incident_id uuid, event_id bigint, level integer, target text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_incident ops.alert_incidents;
    v_chain jsonb;
    v_target text;
    v_event bigint;
    v_delay integer;
begin
    perform ops.require_trusted_caller();
    for v_incident in
        select * from ops.alert_incidents i
        where i.state = 'open' and i.next_escalation_at <= p_now
        order by i.next_escalation_at for update skip locked
    loop
        select coalesce(rr.escalation, '[]'::jsonb) into v_chain
        from ops.routing_rules rr where rr.id = v_incident.route_rule_id;
        v_chain := coalesce(v_chain, '[]'::jsonb);
        select r.escalate_after_s into v_delay from ops.alert_rules r where r.id = v_incident.rule_id;
        v_target := v_chain ->> v_incident.escalation_level;
        if v_target is null then
            update ops.alert_incidents i set next_escalation_at = null, updated_at = now() where i.id = v_incident.id;
            continue;
        end if;
        update ops.alert_incidents i set escalation_level = i.escalation_level + 1,
            next_escalation_at = p_now + make_interval(secs => v_delay), updated_at = now()
        where i.id = v_incident.id;
        insert into ops.alert_incident_events (org_id, incident_id, kind, rule_id, subject, at, detail)
        values (v_incident.org_id, v_incident.id, 'escalated', v_incident.rule_id, v_incident.subject, p_now,
                jsonb_build_object('level', v_incident.escalation_level + 1, 'target', v_target))
        returning id into v_event;
        return query select v_incident.id, v_event, v_incident.escalation_level + 1, v_target;
    end loop;
end;
$$;

-- Outbox: queue one delivery (idempotent per event, channel and target).
create function ops.enqueue_delivery(
    p_event bigint, p_channel text, p_target text, p_payload jsonb, p_user uuid default null,
    p_not_before timestamptz default now(), p_held_reason text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_trusted_caller();
    insert into ops.alert_deliveries (org_id, incident_id, event_id, channel, target, user_id, payload,
        next_attempt_at, held_reason)
    select e.org_id, e.incident_id, e.id, p_channel, p_target, p_user, p_payload, p_not_before, p_held_reason
    from ops.alert_incident_events e where e.id = p_event
    on conflict (event_id, channel, target) do nothing
    returning id into v_id;
    return v_id;
end;
$$;

-- Claim up to p_limit due deliveries, pushing them p_lease_s ahead so no other sender takes them.
create function ops.claim_deliveries(p_now timestamptz, p_limit integer, p_lease_s integer default 60)
returns setof ops.alert_deliveries
language plpgsql security definer
set search_path = ''
as $$
begin
    perform ops.require_trusted_caller();
    return query
    update ops.alert_deliveries d set attempts = d.attempts + 1,
        next_attempt_at = p_now + make_interval(secs => p_lease_s)
    where d.id in (
        select x.id from ops.alert_deliveries x
        where x.state = 'pending' and x.next_attempt_at <= p_now
        order by x.next_attempt_at limit p_limit for update skip locked)
    returning d.*;
end;
$$;

-- Record a send's outcome: sent, or failed (retry at p_retry_at, dead after max attempts).
create function ops.finish_delivery(
    p_delivery uuid, p_ok boolean, p_error text, p_now timestamptz, p_retry_at timestamptz
) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
    v_state text;
begin
    perform ops.require_trusted_caller();
    update ops.alert_deliveries d set
        state = case when p_ok then 'sent' when d.attempts >= d.max_attempts then 'dead' else 'pending' end,
        sent_at = case when p_ok then p_now end,
        last_error = case when p_ok then d.last_error else left(p_error, 2000) end,
        next_attempt_at = case when p_ok then d.next_attempt_at else p_retry_at end
    where d.id = p_delivery and d.state = 'pending'
    returning d.state into v_state;
    return v_state;
end;
$$;

create function ops.add_notification(
    p_user uuid, p_event bigint, p_title text, p_body text, p_link text
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_trusted_caller();
    insert into ops.notifications (org_id, user_id, incident_id, event_id, severity, title, body, link)
    select e.org_id, p_user, e.incident_id, e.id, i.severity, p_title, p_body, p_link
    from ops.alert_incident_events e join ops.alert_incidents i on i.id = e.incident_id
    where e.id = p_event
    on conflict (user_id, event_id) do nothing
    returning id into v_id;
    return v_id;
end;
$$;

-- Mark a user's notifications read (all of them when p_ids is null); returns how many changed.
create function ops.mark_notifications_read(p_user uuid, p_ids uuid[], p_at timestamptz default now())
returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_count integer;
begin
    if ops.caller_is_end_user() and p_user is distinct from auth.uid() then
        raise exception using errcode = 'LH403', message = 'permission denied: only your own notifications';
    end if;
    update ops.notifications n set read_at = p_at
    where n.user_id = p_user and n.read_at is null and (p_ids is null or n.id = any (p_ids));
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

-- A user's own preferences; nobody else may write them (an admin cannot silence someone's pages).
create function ops.put_notification_preferences(p_org uuid, p_user uuid, p_actor uuid, p_prefs jsonb)
returns ops.notification_preferences
language plpgsql security definer
set search_path = ''
as $$
declare
    v_row ops.notification_preferences;
begin
    if p_actor is distinct from p_user or (ops.caller_is_end_user() and p_user is distinct from auth.uid()) then
        raise exception using errcode = 'LH403',
            message = 'permission denied: notification preferences are changed by their user only';
    end if;
    if not exists (select 1 from ops.org_members om where om.org_id = p_org and om.user_id = p_user) then
        raise exception using errcode = 'LH403', message = format('user %s is not a member of org %s', p_user, p_org);
    end if;
    begin
        perform now() at time zone coalesce(p_prefs ->> 'timezone', 'UTC');
    exception when invalid_parameter_value then
        perform ops.invalid('timezone', format('"%s" is not a time zone name such as "UTC" or "Europe/Paris"',
            p_prefs ->> 'timezone'));
    end;
    insert into ops.notification_preferences as np (org_id, user_id, channels, webhook_url, min_severity,
        quiet_start, quiet_end, timezone, critical_overrides_quiet, digest_info, subscribed_jobs,
        subscribed_projects, muted_jobs, updated_at)
    values (p_org, p_user,
        coalesce(ops.json_text_array(p_prefs -> 'channels'), '{email,in_app}'),
        p_prefs ->> 'webhook_url',
        coalesce(p_prefs ->> 'min_severity', 'info'),
        (p_prefs ->> 'quiet_start')::time, (p_prefs ->> 'quiet_end')::time,
        coalesce(p_prefs ->> 'timezone', 'UTC'),
        coalesce((p_prefs ->> 'critical_overrides_quiet')::boolean, true),
        coalesce((p_prefs ->> 'digest_info')::boolean, false),
        coalesce(ops.json_text_array(p_prefs -> 'subscribed_jobs'), '{}'),
        coalesce((select array_agg(x::uuid) from jsonb_array_elements_text(
            coalesce(p_prefs -> 'subscribed_projects', '[]')) x), '{}'),
        coalesce(ops.json_text_array(p_prefs -> 'muted_jobs'), '{}'),
        now())
    on conflict (org_id, user_id) do update set channels = excluded.channels, webhook_url = excluded.webhook_url,
        min_severity = excluded.min_severity, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,
        timezone = excluded.timezone, critical_overrides_quiet = excluded.critical_overrides_quiet,
        digest_info = excluded.digest_info, subscribed_jobs = excluded.subscribed_jobs,
        subscribed_projects = excluded.subscribed_projects, muted_jobs = excluded.muted_jobs, updated_at = now()
    returning * into v_row;
    return v_row;
end;
$$;

-- Mute a job for the whole org (operators), until a time or until unmuted (p_mute false).
create function ops.set_job_mute(p_org uuid, p_job text, p_mute boolean, p_until timestamptz, p_user uuid, p_actor text)
returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() and p_user is distinct from auth.uid() then
        raise exception using errcode = 'LH403', message = 'permission denied: mute jobs as yourself';
    end if;
    if (p_user is not null and ops.role_rank((select om.role from ops.org_members om
            where om.org_id = p_org and om.user_id = p_user)) < ops.role_rank('operator'))
       or (p_user is null and ops.caller_is_end_user()) then
        raise exception using errcode = 'LH403', message = format('permission denied: muting needs the operator role in org %s', p_org);
    end if;
    if p_mute then
        insert into ops.alert_mutes (org_id, job, until, muted_by) values (p_org, p_job, p_until, p_actor)
        on conflict (org_id, job) do update set until = excluded.until, muted_by = excluded.muted_by;
    else
        delete from ops.alert_mutes m where m.org_id = p_org and m.job = p_job;
    end if;
    return p_mute;
end;
$$;

revoke execute on function ops.fire_alert, ops.resolve_alert, ops.escalate_incidents, ops.enqueue_delivery,
    ops.claim_deliveries, ops.finish_delivery, ops.add_notification from public;

-- Row-level security ------------------------------------------------------------------------------

alter table ops.alert_channels enable row level security;
alter table ops.alert_incidents enable row level security;
alter table ops.alert_incident_events enable row level security;
alter table ops.alert_deliveries enable row level security;
alter table ops.notifications enable row level security;
alter table ops.notification_preferences enable row level security;
alter table ops.alert_mutes enable row level security;

grant select on ops.alert_channels, ops.alert_incidents, ops.alert_incident_events, ops.alert_deliveries,
    ops.notifications, ops.notification_preferences, ops.alert_mutes to authenticated;
grant all on ops.alert_channels, ops.alert_incidents, ops.alert_incident_events, ops.alert_deliveries,
    ops.notifications, ops.notification_preferences, ops.alert_mutes to service_role;
grant usage on sequence ops.alert_incident_events_id_seq to service_role;

create policy alert_channels_read on ops.alert_channels for select to authenticated
    using (ops.org_role(org_id) is not null);
create policy alert_incidents_read on ops.alert_incidents for select to authenticated
    using (ops.org_role(org_id) is not null or (project_id is not null and ops.has_project_role(project_id, 'viewer')));
create policy alert_incident_events_read on ops.alert_incident_events for select to authenticated
    using (incident_id in (select i.id from ops.alert_incidents i));
create policy alert_deliveries_read on ops.alert_deliveries for select to authenticated
    using (incident_id in (select i.id from ops.alert_incidents i));
create policy notifications_own on ops.notifications for select to authenticated
    using (user_id = auth.uid());
-- Own preferences, and an org admin sees the org's members' (read only).
create policy notification_preferences_read on ops.notification_preferences for select to authenticated
    using (user_id = auth.uid() or ops.org_role(org_id) = 'admin');
create policy alert_mutes_read on ops.alert_mutes for select to authenticated
    using (ops.org_role(org_id) is not null);
