-- Lifecycle throughput, second pass (issue 25, deliver 1): the same guarantees (leases, fencing,
-- exactly-once outcomes, the documented lock order: tasks by id, caps by id, cap_usage, runs by id) for
-- less work per task.
--  * NOTIFY only for what a listener acts on: the alert evaluator looks at task endings that are
--    failures (services/alerts.py TERMINAL_FAILURES), so a succeeded or cancelled task no longer
--    queues a notification (one per task, distinct payloads, each taking the commit-time notify lock).
--    Run endings still notify once per run.
--  * ops.tasks: the (run_id) index is replaced by (run_id, status): an index no larger, maintained on
--    the same updates, that answers the run-status refresh with probes instead of counting every task
--    of the run on each batch (a 10,000-task run was counted 200 times by batches of 50). A partial
--    index finds the runs that have dependencies at all, so finalize settles dependants only there
--    without scanning the run's tasks for each finalized task.
--  * ops.finalize_tasks parses its items once, locks the tasks in id order and reads their verdicts in
--    one statement, and moves retried and finished tasks in one UPDATE (one audit statement).

set local lock_timeout = '10s';
set local statement_timeout = '300s';

-- Notifications ------------------------------------------------------------------------------------

drop trigger tasks_notify_alert on ops.tasks;
create trigger tasks_notify_alert after update of status on ops.tasks
    for each row when (new.status is distinct from old.status and new.status in ('failed', 'timed_out', 'lost'))
    execute function ops.notify_alert_signal();

-- Indexes ------------------------------------------------------------------------------------------

create index tasks_run_status on ops.tasks (run_id, status);
drop index ops.tasks_run;
create index tasks_run_deps on ops.tasks (run_id) where depends_on <> '{}';

-- Run status ---------------------------------------------------------------------------------------

-- The status of a run derived from its tasks as before (any active: running; any waiting: running
-- once one started, else queued; then failed, cancelled, succeeded), each question an index probe of
-- (run_id, status) that stops at its first row, asked only when the ones before it said no. Runs are
-- locked in id order first (the documented lock order), so concurrent finalizers of one run derive it
-- one after the other, each seeing the other's committed tasks.
create or replace function ops.refresh_runs_status(p_runs uuid[])
returns table (run_id uuid, run_status text)
language plpgsql security definer
set search_path = ''
as $$
begin
    perform 1 from (select r.id from ops.runs r where r.id = any(p_runs) order by r.id for no key update) locked;
    return query
    with derived as (
        select r.id as run_id,
               case when exists (select 1 from ops.tasks t where t.run_id = r.id and t.status in ('claimed', 'running'))
                        then 'running'
                    when exists (select 1 from ops.tasks t where t.run_id = r.id and t.status in ('pending', 'queued'))
                        then case when exists (select 1 from ops.tasks t
                                               where t.run_id = r.id and t.attempt > 0
                                                 and t.status in ('queued', 'succeeded', 'failed', 'lost', 'timed_out',
                                                                  'cancelled', 'skipped', 'pending'))
                                  then 'running' else 'queued' end
                    when exists (select 1 from ops.tasks t
                                 where t.run_id = r.id and t.status in ('failed', 'lost', 'timed_out'))
                        then 'failed'
                    when exists (select 1 from ops.tasks t where t.run_id = r.id and t.status = 'cancelled')
                        then 'cancelled'
                    when exists (select 1 from ops.tasks t where t.run_id = r.id)
                        then 'succeeded'
               end as status
        from (select distinct u.id from unnest(p_runs) u(id)) r
    ), changed as (
        update ops.runs r
        set status = d.status,
            started_at = case when d.status <> 'queued' then coalesce(r.started_at, now()) else r.started_at end,
            finished_at = case when d.status in ('succeeded', 'failed', 'cancelled') then coalesce(r.finished_at, now()) end
        from derived d
        where r.id = d.run_id and d.status is not null and r.status is distinct from d.status
        returning r.id
    )
    select d.run_id, d.status from derived d where d.status is not null;
end;
$$;

-- Finalize many ------------------------------------------------------------------------------------

-- Set-based, as before, with the items parsed once: the tasks are locked in id order and read for the
-- verdicts in one statement (step 1), then the caps of their orgs (step 2), attempts end, retried and
-- finished tasks move in one UPDATE, dependants settle only in runs that have any, and each run is
-- refreshed once, by id (step 4). Same verdicts and messages as ops.finalize_task item by item; a batch
-- naming a task twice keeps the item-by-item path, where each item sees the one before it.
create or replace function ops.finalize_tasks(p_items jsonb)
returns table (task_id uuid, task_status text, run_status text, replayed boolean, error_code text, error text)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_n bigint[];
    v_task uuid[];
    v_lease uuid[];
    v_outcome text[];
    v_result jsonb[];
    v_error text[];
    v_verdict text[];
    v_message text[];
    v_run uuid[];
    v_orgs uuid[];
    v_caps boolean;
    v_runs uuid[];
    v_dep_runs uuid[];
    v_final record;
    v_distinct boolean;
begin
    if jsonb_typeof(p_items) is distinct from 'array' then
        perform ops.invalid('items', 'must be an array of {task_id, lease_token, outcome}');
    end if;
    select array_agg(i.n order by i.n), array_agg(i.task_id order by i.n), array_agg(i.lease order by i.n),
           array_agg(i.outcome order by i.n), array_agg(i.result order by i.n), array_agg(i.error order by i.n),
           count(*) = count(distinct i.task_id)
    into v_n, v_task, v_lease, v_outcome, v_result, v_error, v_distinct
    from ops.finalize_items(p_items) i;
    if v_n is null then
        return;
    end if;
    if not v_distinct then
        return query select * from ops.finalize_tasks_each(p_items);
        return;
    end if;

    -- Step 1 and the verdict of each item, in the order ops.finalize_task checks them: the locking
    -- subquery takes the tasks' row locks in id order (its sort sits under the lock) and reads each
    -- task's latest version.
    select array_agg(x.verdict order by x.n), array_agg(x.message order by x.n), array_agg(x.run_id order by x.n),
           array_agg(distinct x.org_id) filter (where x.org_id is not null)
    into v_verdict, v_message, v_run, v_orgs
    from (
        select i.n, t.run_id, t.org_id,
               case when i.outcome is null or i.outcome not in ('succeeded', 'failed', 'cancelled', 'timed_out') then 'LH422'
                    when t.id is null then 'LH404'
                    when a.task_id is null then 'LH409'
                    when a.outcome = i.outcome then 'replay'
                    when a.outcome is not null then 'LH409'
                    when t.lease_token is distinct from i.lease or t.status not in ('claimed', 'running') then 'LH409'
                    when i.outcome = 'failed' and t.attempt < t.max_attempts and not t.cancel_requested
                         and coalesce((i.result ->> 'retryable')::boolean, true) then 'retry'
                    else 'final' end as verdict,
               case when i.outcome is null or i.outcome not in ('succeeded', 'failed', 'cancelled', 'timed_out')
                        then 'outcome: must be one of succeeded, failed, cancelled, timed_out'
                    when t.id is null then format('task %s does not exist', i.task_id)
                    when a.task_id is null then format('lease token does not belong to task %s', i.task_id)
                    when a.outcome = i.outcome then null
                    when a.outcome = 'lost' then
                        format('lease lost: attempt %s of task %s expired and was reaped; its outcome is not recorded',
                               a.attempt, i.task_id)
                    when a.outcome is not null then
                        format('task %s attempt %s already ended %s; it cannot be finalized %s',
                               i.task_id, a.attempt, a.outcome, i.outcome)
                    when t.lease_token is distinct from i.lease or t.status not in ('claimed', 'running') then
                        format('lease lost: task %s is no longer held by this lease', i.task_id)
                    end as message
        from unnest(v_n, v_task, v_lease, v_outcome, v_result) i(n, task_id, lease, outcome, result)
        left join (
            select l.id, l.run_id, l.org_id, l.status, l.lease_token, l.attempt, l.max_attempts, l.cancel_requested
            from ops.tasks l where l.id = any(v_task) order by l.id for update
        ) t on t.id = i.task_id
        left join ops.task_attempts a on a.task_id = i.task_id and a.lease_token = i.lease
    ) x;

    -- Step 2: the caps of the tasks' orgs.
    v_caps := exists (select 1 from ops.caps c where c.org_id = any(v_orgs) and c.enabled);
    if v_caps then
        perform ops.lock_caps(v_orgs);
    end if;

    if 'retry' = any(v_verdict) or 'final' = any(v_verdict) then
        -- Attempts end, then tasks move in one statement: retried ones back to the queue with backoff,
        -- the others to their outcome.
        update ops.task_attempts a
        set outcome = i.outcome, finished_at = now(), result = i.result, error = i.error,
            started_at = coalesce(a.started_at, a.claimed_at)
        from unnest(v_task, v_lease, v_outcome, v_result, v_error, v_verdict) i(task_id, lease, outcome, result, error, verdict)
        where i.verdict in ('retry', 'final') and a.task_id = i.task_id and a.lease_token = i.lease;

        update ops.tasks t
        set status = case when i.verdict = 'retry' then 'queued' else i.outcome end,
            lease_token = null, lease_expires_at = null,
            executor_id = case when i.verdict = 'retry' then null else t.executor_id end,
            error = i.error, result = i.result,
            not_before = case when i.verdict = 'retry'
                              then now() + make_interval(
                                  secs => least(t.retry_backoff_s * power(2, t.attempt - 1) * (1 + random() * 0.1), 86400))
                              else t.not_before end,
            finished_at = case when i.verdict = 'final' then now() else t.finished_at end,
            started_at = case when i.verdict = 'final' then coalesce(t.started_at, t.claimed_at) else t.started_at end
        from unnest(v_task, v_outcome, v_result, v_error, v_verdict) i(task_id, outcome, result, error, verdict)
        where i.verdict in ('retry', 'final') and t.id = i.task_id;
    end if;

    if 'final' = any(v_verdict) then
        -- Dependants and usage only where there are any: a run without depends_on has nothing to settle.
        v_dep_runs := array(select distinct d.run_id from ops.tasks d
                            where d.run_id = any(v_run) and d.depends_on <> '{}');
        if v_caps or cardinality(v_dep_runs) > 0 then
            for v_final in
                select t.*, i.outcome as final_outcome, i.n
                from unnest(v_n, v_task, v_outcome, v_verdict) i(n, task_id, outcome, verdict)
                join ops.tasks t on t.id = i.task_id
                where i.verdict = 'final' and (v_caps or t.run_id = any(v_dep_runs))
                order by i.n
            loop
                if v_final.run_id = any(v_dep_runs) then
                    perform ops.settle_dependants(v_final.run_id, v_final.key, v_final.final_outcome);
                end if;
                if v_caps then
                    perform ops.record_task_usage(
                        (select t from ops.tasks t where t.id = v_final.id), v_final.final_outcome);
                end if;
            end loop;
        end if;
    end if;

    -- Each run once, by id (step 4).
    v_runs := array(select distinct v.run_id from unnest(v_run, v_verdict) v(run_id, verdict)
                    where v.verdict in ('replay', 'retry', 'final') order by 1);
    return query
    with runs as (select * from ops.refresh_runs_status(v_runs))
    select v.task_id,
           case when v.verdict like 'LH%' then null else t.status end,
           case when v.verdict like 'LH%' then null else runs.run_status end,
           v.verdict = 'replay',
           case when v.verdict like 'LH%' then v.verdict end,
           case when v.verdict like 'LH%' then v.message end
    from unnest(v_n, v_task, v_verdict, v_message) v(n, task_id, verdict, message)
    left join ops.tasks t on t.id = v.task_id
    left join runs on runs.run_id = t.run_id
    order by v.n;
end;
$$;
