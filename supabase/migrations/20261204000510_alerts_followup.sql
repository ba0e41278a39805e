-- Alerts, follow-up: evaluators keep the enabled rules between signals and hear when they change; the
-- deliveries sender wakes when the outbox gets rows (no waiting for its interval);
-- members of a project (without an org role) keep their own notification preferences in the project's
-- org too, as they get the bell of their project's incidents (services/notifications.py).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- A statement trigger that NOTIFYs channel tg_argv[0] with payload tg_argv[1]: one NOTIFY per
-- statement (and Postgres folds repeats within a transaction).
create function ops.notify_statement() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform pg_notify(tg_argv[0], coalesce(tg_argv[1], ''));
    return null;
end;
$$;

-- The deliveries sender: the outbox got rows.
create trigger alert_deliveries_notify after insert on ops.alert_deliveries
    for each statement execute function ops.notify_statement('lakehouse_deliveries');

-- The evaluators: "rules" on their channel whenever a statement changes alert rules.
create trigger alert_rules_notify after insert or update or delete on ops.alert_rules
    for each statement execute function ops.notify_statement('lakehouse_alerts', 'rules');

create or replace function ops.put_notification_preferences(p_org uuid, p_user uuid, p_actor uuid, p_prefs jsonb)
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
    if not exists (select 1 from ops.org_members om where om.org_id = p_org and om.user_id = p_user)
       and not exists (select 1 from ops.project_members pm join ops.projects p on p.id = pm.project_id
                       where p.org_id = p_org and pm.user_id = p_user) then
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
