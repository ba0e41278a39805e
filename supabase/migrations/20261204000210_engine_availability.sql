-- Which engines are live (issue 15): at submit, each task's engine should be offered by an executor of its
-- routed pool that is online or was seen recently. When none is, the run is accepted with a warning stored on
-- it (shown by the API and the run page), or refused when the project sets require_available_engine.
alter table ops.projects add column require_available_engine boolean not null default false;
alter table ops.runs add column warnings text[] not null default '{}';

-- The warnings of a run's tasks; stores them on the run, or raises LH422 naming the first task when the
-- project requires available engines. Called by the API's submit in the submit's transaction (so a refusal
-- leaves no run behind). p_recent_seconds: how long ago an executor may have been seen and still count.
create function ops.note_engine_availability(p_run uuid, p_recent_seconds integer) returns text[]
language plpgsql security definer
set search_path = ''
as $$
declare
    v_run record;
    v_env text;
    v_required boolean;
    v_warnings text[];
    v_first integer;
begin
    select r.id, r.org_id, r.project_id, r.environment_id, r.tags, r.spec into v_run from ops.runs r where r.id = p_run;
    if not found then
        raise exception using errcode = 'LH404', column = 'run_id', message = format('run %s does not exist', p_run);
    end if;
    perform ops.require_project_role(v_run.project_id, 'operator');
    select e.name into v_env from ops.environments e where e.id = v_run.environment_id;
    select p.require_available_engine into v_required from ops.projects p where p.id = v_run.project_id;
    with routed as (
        select x.n, t.key, t.engine,
               case when t.status <> 'pending' then t.pool
                    when rt.rule_id is not null and rt.allow_pool_override and t.requested_pool is not null
                        then t.requested_pool
                    else coalesce(rt.pool, 'default') end as pool
        from ops.tasks t
        join jsonb_array_elements(v_run.spec -> 'tasks') with ordinality as x(spec, n) on x.spec ->> 'key' = t.key
        left join lateral ops.route_task(t.org_id, t.project_id, v_env, t.engine, t.labels, v_run.tags) rt on true
        where t.run_id = p_run
    ), missing as (
        select r.n, format('task %s: no executor of pool %s that offers engine %s is online or was seen in the last %s s',
                           r.key, r.pool, r.engine, p_recent_seconds) as warning
        from routed r
        where not exists (
            select 1 from ops.executors e
            where e.org_id = v_run.org_id and e.pool = r.pool and e.token_revoked_at is null
              and r.engine = any(e.engines)
              and (e.status in ('online', 'draining')
                   or e.last_heartbeat_at > now() - make_interval(secs => p_recent_seconds)))
    )
    select array_agg(m.warning order by m.n), min(m.n) into v_warnings, v_first from missing m;
    if v_warnings is null then
        return '{}';
    end if;
    if v_required then
        raise exception using errcode = 'LH422', column = format('spec.tasks[%s].engine', v_first - 1),
            message = v_warnings[1] || '; this project requires an available engine (require_available_engine)';
    end if;
    update ops.runs set warnings = v_warnings where id = p_run;
    return v_warnings;
end;
$$;

revoke execute on function ops.note_engine_availability(uuid, integer) from public;
grant execute on function ops.note_engine_availability(uuid, integer) to authenticated, service_role;
