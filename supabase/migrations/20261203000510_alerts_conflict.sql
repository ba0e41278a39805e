-- Alerts, follow-up: acting on a resolved incident is a plain conflict (LH423 -> 409 "Conflict"), not
-- LH409, which the API reserves for a lost lease.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create or replace function ops.act_on_incident(
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
        raise exception using errcode = 'LH423', message = format('incident %s is already resolved', p_incident);
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
