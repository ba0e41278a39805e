-- Alerts UI (issue 20): the bell hears its user's notifications by LISTEN/NOTIFY, and rule edits made
-- by people (the API and the UI act as the user) are audited like bundle deploys.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

-- The bell: "lakehouse_notifications" with the user's id whenever one of their notifications is added
-- or read. NOTIFY collapses identical payloads of one transaction, so marking 50 read is one wake-up.
create function ops.notify_notification_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform pg_notify('lakehouse_notifications', coalesce(new.user_id, old.user_id)::text);
    return null;
end;
$$;

create trigger notifications_notify after insert or update of read_at on ops.notifications
    for each row execute function ops.notify_notification_change();

-- Audit of rule edits by end users (API, UI). The bundle deploy and the CLI write as a trusted caller
-- and audit each change themselves (control_room/bundle/deploy.py), so they are not counted twice.
-- Security definer: `authenticated` may not insert into the audit log; the actor comes from the JWT.
create function ops.audit_alert_rule_change() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    v_old jsonb := case when tg_op <> 'INSERT' then to_jsonb(old) end;
    v_new jsonb := case when tg_op <> 'DELETE' then to_jsonb(new) end;
    v_row jsonb := coalesce(v_new, v_old);
    v_changes jsonb;
begin
    if not ops.caller_is_end_user() then
        return null;
    end if;
    select coalesce(jsonb_agg(jsonb_build_object('field', k, 'old', v_old -> k, 'new', v_new -> k) order by k), '[]')
    into v_changes
    from jsonb_object_keys(coalesce(v_new, v_old)) k
    where k not in ('updated_at', 'created_at')
      and (v_old -> k) is distinct from (v_new -> k);
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (coalesce(auth.jwt() ->> 'email', auth.uid()::text, session_user::text), 'alert_rules',
            (v_row ->> 'id')::uuid, (v_row ->> 'project_id')::uuid,
            case tg_op when 'INSERT' then 'create' when 'UPDATE' then 'update' else 'delete' end,
            jsonb_build_object('source', 'api', 'key', v_row ->> 'name', 'org_id', v_row ->> 'org_id',
                               'changes', v_changes));
    return null;
end;
$$;

create trigger alert_rules_audit after insert or update or delete on ops.alert_rules
    for each row execute function ops.audit_alert_rule_change();

-- Incidents are listed newest first in keyset pages of (last_fired_at, id).
create index alert_incidents_org_fired on ops.alert_incidents (org_id, last_fired_at desc, id desc);
