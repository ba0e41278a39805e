-- The scheduler records a burst of due fires first and submits their runs after: a fire is claimed
-- and written in one set-based statement per batch (status 'pending'), then replicas submit the
-- pending fires' runs in small batches (FOR UPDATE SKIP LOCKED), each fire moving to fired /
-- queued / skipped / failed in the same transaction as its run. 5,000 schedules due at one minute
-- are all recorded within seconds even where submitting 5,000 runs takes longer; a replica killed
-- while submitting leaves its fires pending for another (exactly once: the fire row is the key).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

alter table ops.schedule_fires drop constraint schedule_fires_status_check;
alter table ops.schedule_fires add constraint schedule_fires_status_check
    check (status in ('pending', 'fired', 'queued', 'skipped', 'missed', 'failed'));
create index schedule_fires_pending on ops.schedule_fires (due_at) where status = 'pending';

-- Record a batch of the scheduler's decisions (see 20261203000300_jobs.sql for the shape of
-- p_fires and p_plans) in two statements: fires to fire become 'pending', others keep their
-- status; an existing (schedule, fire time) is left alone. Returns the fires recorded by status.
create or replace function ops.record_schedule_fires(p_fires jsonb, p_plans jsonb)
returns table (status text, fires integer)
language plpgsql security definer
set search_path = ''
as $$
begin
    update ops.schedules s
    set next_fire_at = p.next_fire_at, next_due_at = p.next_due_at
    from jsonb_to_recordset(p_plans) as p(schedule_id uuid, next_fire_at timestamptz, next_due_at timestamptz)
    where s.id = p.schedule_id;
    return query
    with recorded as (
        insert into ops.schedule_fires as f (schedule_id, org_id, project_id, fire_time, due_at, status, reason,
                                             params, template_version, created_at, updated_at)
        select s.id, s.org_id, s.project_id, x.fire_time, x.due_at,
               case x.status when 'fire' then 'pending' else x.status end,
               x.reason, coalesce(x.params, '{}'), x.template_version, clock_timestamp(), clock_timestamp()
        from jsonb_to_recordset(p_fires) as x(schedule_id uuid, fire_time timestamptz, due_at timestamptz,
                                              status text, reason text, params jsonb, template_version integer)
        join ops.schedules s on s.id = x.schedule_id
        order by x.due_at
        on conflict (schedule_id, fire_time) do nothing
        returning f.status
    )
    select r.status, count(*)::integer from recorded r group by r.status;
end;
$$;

-- Submit the runs of up to p_limit pending fires, oldest due first, by each schedule's overlap
-- policy. Returns the fires' new statuses.
create function ops.submit_pending_fires(p_limit integer default 50)
returns table (status text, fires integer)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_fire uuid;
    v_status text;
    v_counts jsonb := '{}';
begin
    for v_fire in
        select f.id from ops.schedule_fires f where f.status = 'pending'
        order by f.due_at, f.schedule_id, f.fire_time
        limit p_limit
        for update skip locked
    loop
        v_status := ops.apply_schedule_fire(v_fire);
        v_counts := jsonb_set(v_counts, array[v_status], to_jsonb(coalesce((v_counts ->> v_status)::integer, 0) + 1));
    end loop;
    return query select k, v::integer from jsonb_each_text(v_counts) as e(k, v);
end;
$$;

revoke execute on function ops.record_schedule_fires(jsonb, jsonb), ops.submit_pending_fires(integer) from public;
grant execute on function ops.record_schedule_fires(jsonb, jsonb), ops.submit_pending_fires(integer) to service_role;
