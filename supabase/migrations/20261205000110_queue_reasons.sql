-- Why is it queued (issue 16): for each waiting task of a run, the reason the control plane holds it,
-- computed from the same facts the claim uses: upstream tasks, retry backoff, the live executors of the
-- task's pool that offer its engine and labels (or only draining ones), the pool's free slots, and the
-- concurrency and compute caps that apply. Read-only; members of the project (viewer and up) may ask.

create function ops.queue_reasons(p_run uuid, p_offline_after_seconds integer default 60)
returns table (task_key text, reason text)
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_run ops.runs;
    t ops.tasks;
    v_cap ops.caps;
    v_waiting text[];
    v_live integer;
    v_draining integer;
    v_slots bigint;
    v_busy bigint;
    v_used double precision;
    v_what text;
begin
    select * into v_run from ops.runs r where r.id = p_run;
    if not found then
        raise exception using errcode = 'LH404', column = 'run_id', message = format('run %s does not exist', p_run);
    end if;
    perform ops.require_project_role(v_run.project_id, 'viewer');
    for t in
        select * from ops.tasks x where x.run_id = p_run and x.status in ('pending', 'queued') order by x.created_at, x.key
    loop
        task_key := t.key;
        reason := null;
        if t.status = 'pending' then
            select array_agg(d order by d) into v_waiting from unnest(t.depends_on) d
            where not exists (select 1 from ops.tasks u where u.run_id = p_run and u.key = d and u.status = 'succeeded');
            reason := format('waiting for upstream task%s %s to succeed',
                             case when cardinality(v_waiting) > 1 then 's' else '' end,
                             array_to_string(coalesce(v_waiting, '{}'), ', '));
            return next;
            continue;
        end if;
        if t.not_before > now() then
            reason := format('attempt %s failed; retrying after its backoff, at %s UTC', t.attempt,
                             to_char(t.not_before at time zone 'UTC', 'HH24:MI:SS'));
            return next;
            continue;
        end if;
        v_what := format('pool "%s" offers engine %s%s', t.pool, t.engine,
                         case when cardinality(t.required_labels) > 0
                              then ' with labels ' || array_to_string(t.required_labels, ', ') else '' end);
        select count(*) filter (where not e.drain_requested and e.status = 'online'),
               count(*) filter (where e.drain_requested or e.status = 'draining'),
               coalesce(sum(e.max_concurrency) filter (where not e.drain_requested and e.status = 'online'), 0),
               coalesce(sum(e.running_tasks) filter (where not e.drain_requested and e.status = 'online'), 0)
        into v_live, v_draining, v_slots, v_busy
        from ops.executors e
        where e.org_id = t.org_id and e.pool = t.pool and t.engine = any(e.engines)
          and t.required_labels <@ e.labels and e.status in ('online', 'draining')
          and e.last_heartbeat_at > now() - make_interval(secs => p_offline_after_seconds);
        if v_live = 0 and v_draining > 0 then
            reason := format('only draining executors of %s: it waits until one is undrained or another joins', v_what);
        elsif v_live = 0 then
            reason := coalesce(t.routing_problem, format('no live executor of %s', v_what));
        elsif v_busy >= v_slots then
            reason := format('pool "%s" is at its concurrency limit: %s of %s slots busy', t.pool, v_busy, v_slots);
        else
            for v_cap in
                select c.* from ops.caps c
                where c.org_id = t.org_id and c.enabled and c.kind in ('concurrent_tasks', 'compute_seconds_per_day')
                  and ops.cap_applies(c, t)
                order by c.name
            loop
                if v_cap.kind = 'concurrent_tasks' then
                    select count(*) into v_used from ops.tasks x
                    where x.status in ('claimed', 'running') and ops.cap_applies(v_cap, x);
                else
                    select coalesce(max(u.compute_seconds), 0) into v_used from ops.cap_usage u
                    where u.cap_id = v_cap.id and u.day = ops.utc_today();
                end if;
                if v_used >= v_cap.limit_value then
                    reason := format('cap "%s" (%s = %s, %s scope) is reached: %s', v_cap.name, v_cap.kind,
                                     v_cap.limit_value, v_cap.scope, v_used);
                    exit;
                end if;
            end loop;
            reason := coalesce(reason, format('ready: %s live executor%s of pool "%s" can take it at the next claim',
                                              v_live, case when v_live > 1 then 's' else '' end, t.pool));
        end if;
        return next;
    end loop;
end;
$$;

revoke execute on function ops.queue_reasons(uuid, integer) from public;
grant execute on function ops.queue_reasons(uuid, integer) to anon, authenticated, service_role;
