-- Re-execute from failure (issue 16): a re-run of a failed or cancelled run reuses the outcomes of
-- the tasks that succeeded there and runs only the failed, cancelled and downstream tasks (or a
-- chosen task and its downstream). The new run is created by ops.submit_run as a retry of the source
-- (runs.retry_of links the two both ways); this function then marks the reused tasks succeeded in
-- the same transaction, before any executor can see the run. A reused task keeps a link to the task
-- that produced its outcome (reused_from_task, always the original producer, never a reuse of a
-- reuse), so its artifacts are found through it: artifacts stay write-once where they were made.

alter table ops.tasks add column reused_from_task uuid references ops.tasks (id);

-- The other direction of runs.retry_of (a run page links to its re-runs): a primary-key-like probe.
create index runs_retry_of on ops.runs (retry_of) where retry_of is not null;

comment on column ops.tasks.reused_from_task is
    'A re-run reused this task''s outcome instead of running it: the task (of an earlier run) that produced it.';

-- p_run: a run just created as a retry of its source (runs.retry_of), no task of it claimed yet.
-- p_from_task: null to re-run the source's unsuccessful tasks; else that task. Either way its
-- downstream tasks run too; every other task must have succeeded in the source. Returns the keys of
-- the tasks that will run.
create function ops.reuse_succeeded_tasks(p_run uuid, p_from_task text default null)
returns text[]
language plpgsql security definer
set search_path = ''
as $$
declare
    v_run ops.runs;
    v_source ops.runs;
    v_rerun text[];
    v_blocker text;
begin
    select * into v_run from ops.runs r where r.id = p_run for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'run_id', message = format('run %s does not exist', p_run);
    end if;
    perform ops.require_project_role(v_run.project_id, 'operator');
    if v_run.retry_of is null then
        perform ops.invalid('run_id', format('run %s is not a re-run of another run', p_run));
    end if;
    select * into v_source from ops.runs r where r.id = v_run.retry_of;
    if v_source.project_id is distinct from v_run.project_id or v_source.spec is distinct from v_run.spec then
        perform ops.invalid('run_id', format('run %s does not have the spec of the run it re-runs', p_run));
    end if;
    if exists (select 1 from ops.tasks t where t.run_id = p_run and (t.attempt > 0 or t.status not in ('pending', 'queued'))) then
        raise exception using errcode = 'LH423', column = 'run_id',
            message = format('run %s has started: outcomes can be reused only before any task runs', p_run);
    end if;
    if p_from_task is not null
       and not exists (select 1 from ops.tasks t where t.run_id = v_source.id and t.key = p_from_task) then
        perform ops.invalid('from_task', format('run %s has no task "%s"', v_source.id, p_from_task));
    end if;

    -- What runs: the chosen task (or every unsuccessful one) and everything downstream of it.
    with recursive chosen(key) as (
        select t.key from ops.tasks t
        where t.run_id = v_source.id
          and (t.key = p_from_task or (p_from_task is null and t.status <> 'succeeded'))
        union
        select t.key from ops.tasks t join chosen c on c.key = any(t.depends_on) where t.run_id = v_source.id
    )
    select coalesce(array_agg(key order by key), '{}') into v_rerun from chosen;
    if cardinality(v_rerun) = 0 then
        perform ops.invalid('from_task', format('every task of run %s succeeded: pick a task to re-run from', v_source.id));
    end if;
    select t.key into v_blocker from ops.tasks t
    where t.run_id = v_source.id and t.status <> 'succeeded' and not (t.key = any(v_rerun))
    order by t.key limit 1;
    if v_blocker is not null then
        perform ops.invalid('from_task', format(
            'task "%s" did not succeed in run %s and is not downstream of "%s": re-run failed tasks instead',
            v_blocker, v_source.id, p_from_task));
    end if;

    -- Reused: succeeded with the source's result, no attempt of their own.
    update ops.tasks t
    set status = 'succeeded', result = s.result, error = null, pending_deps = 0,
        finished_at = now(), reused_from_task = coalesce(s.reused_from_task, s.id)
    from ops.tasks s
    where t.run_id = p_run and s.run_id = v_source.id and s.key = t.key and not (t.key = any(v_rerun));

    -- To run: wait only for dependencies that run again; the first ones are claimable at once.
    update ops.tasks t
    set pending_deps = d.waiting,
        status = case when d.waiting = 0 then 'queued' else 'pending' end
    from (
        select x.id, (select count(*) from unnest(x.depends_on) dep where dep = any(v_rerun))::integer as waiting
        from ops.tasks x where x.run_id = p_run and x.key = any(v_rerun)
    ) d
    where t.id = d.id and (t.pending_deps, t.status) is distinct from
        (d.waiting, case when d.waiting = 0 then 'queued' else 'pending' end);

    perform ops.refresh_run_status(p_run);
    return v_rerun;
end;
$$;

revoke execute on function ops.reuse_succeeded_tasks(uuid, text) from public;
grant execute on function ops.reuse_succeeded_tasks(uuid, text) to anon, authenticated, service_role;
