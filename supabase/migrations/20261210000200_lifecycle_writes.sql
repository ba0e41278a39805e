-- Lifecycle throughput, third pass (issue 25, deliver 1): fewer rows and index entries written per task,
-- the same guarantees (leases, fencing, exactly-once outcomes, every status change on record).
--  * Task audit: a task's moves in and out of a lease (queued -> claimed; claimed or running -> an
--    outcome, a retry, a reaped or handed-back lease) are recorded by its attempt row (claimed_at,
--    finished_at, outcome, executor), which each of them writes anyway; an audit row for each as well
--    doubled the rows a claim and a finalize write. The audit log keeps every other move (pending ->
--    queued, claimed -> running, cancelled or skipped before a claim, a reroute) through a row trigger
--    whose WHEN clause is checked in C, so claims and finalizes no longer build transition tables of
--    whole task rows for a statement trigger. ops.task_transitions(task) gives a task's full history.
--  * Attempt rows end in a HOT update (no index entry written): the btree on finished_at (the pool
--    chart's "finished in the last hour") becomes a BRIN index, which PostgreSQL 16+ leaves out of the
--    HOT decision (on 15 the update stays non-HOT, as before), and the table keeps free room on each
--    page for the update (fillfactor 50: the table takes about twice the pages). The chart finds open
--    attempts through the leased tasks instead, since a BRIN range cannot tell that its nulls are gone.
--  * ops.refresh_runs_status asks its questions as scalar subqueries (never a hashed subplan), and the
--    lifecycle functions price sequential scans out of their cached generic plans.
--  * Two index entries fewer per claim (tasks_leased, the attempts' unique lease_token); a heartbeat's
--    UPDATE becomes HOT.

set local lock_timeout = '10s';
set local statement_timeout = '300s';

-- Task audit ---------------------------------------------------------------------------------------

drop trigger tasks_audit on ops.tasks;
create trigger tasks_audit after update of status on ops.tasks
    for each row
    when (new.status is distinct from old.status
          and not (old.status = 'queued' and new.status = 'claimed')
          and not (old.status in ('claimed', 'running') and new.status not in ('claimed', 'running')))
    execute function ops.audit_status_change();

-- Every status change of a task, oldest first: the audit log's rows, and the claim and the end of each
-- attempt. An attempt ends from 'running' when the task was marked running during it (its start, or an
-- audit row claimed -> running in its time); the task goes back to the queue when a later attempt exists,
-- and otherwise to where the task is now (an attempt's outcome says how the attempt ended: a lost lease on
-- a cancelled task leaves it cancelled). A function with the caller's rights, not a view: the row
-- policies of ops.audit_log, ops.task_attempts and ops.tasks apply, and no view pins the columns' types.
create function ops.task_transitions(p_task uuid)
returns table (at timestamptz, actor text, old_status text, new_status text)
language sql stable
set search_path = ''
as $$
    select h.at, h.actor, h.old_status, h.new_status
    from (
        select l.at, l.actor, l.old_status, l.new_status, l.id as n
        from ops.audit_log l
        where l.entity = 'tasks' and l.entity_id = p_task and l.action = 'status'
        union all
        select a.claimed_at, coalesce(x.name, a.executor_id::text), 'queued', 'claimed', null
        from ops.task_attempts a left join ops.executors x on x.id = a.executor_id
        where a.task_id = p_task
        union all
        select a.finished_at, coalesce(x.name, a.executor_id::text),
               case when a.started_at > a.claimed_at
                         or exists (select 1 from ops.audit_log s
                                    where s.entity = 'tasks' and s.entity_id = a.task_id and s.action = 'status'
                                      and s.new_status = 'running' and s.at >= a.claimed_at and s.at <= a.finished_at)
                    then 'running' else 'claimed' end,
               case when exists (select 1 from ops.task_attempts n where n.task_id = a.task_id and n.attempt > a.attempt)
                    then 'queued' else t.status end,
               null
        from ops.task_attempts a
        join ops.tasks t on t.id = a.task_id
        left join ops.executors x on x.id = a.executor_id
        where a.task_id = p_task and a.finished_at is not null
    ) h
    order by h.at, h.n nulls last;
$$;

revoke execute on function ops.task_transitions(uuid) from public;
grant execute on function ops.task_transitions(uuid) to authenticated, service_role;

-- Attempts -----------------------------------------------------------------------------------------

alter table ops.task_attempts set (fillfactor = 50);
drop index ops.task_attempts_finished;
create index task_attempts_finished on ops.task_attempts using brin (finished_at);

-- Run status ---------------------------------------------------------------------------------------

-- As before (20261209000100), each question an index probe of (run_id, status) that stops at its first
-- row, asked only when the ones before it said no; written as scalar subqueries, which the planner
-- cannot turn into a hashed subplan: an EXISTS could be, and then one refresh read every active task
-- of every run (or the whole index) to answer for a batch's five runs.
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
               case when (select true from ops.tasks t where t.run_id = r.id and t.status in ('claimed', 'running') limit 1)
                        then 'running'
                    when (select true from ops.tasks t where t.run_id = r.id and t.status in ('pending', 'queued') limit 1)
                        then case when (select true from ops.tasks t
                                        where t.run_id = r.id and t.attempt > 0
                                          and t.status in ('queued', 'succeeded', 'failed', 'lost', 'timed_out',
                                                           'cancelled', 'skipped', 'pending')
                                        limit 1)
                                  then 'running' else 'queued' end
                    when (select true from ops.tasks t
                          where t.run_id = r.id and t.status in ('failed', 'lost', 'timed_out') limit 1)
                        then 'failed'
                    when (select true from ops.tasks t where t.run_id = r.id and t.status = 'cancelled' limit 1)
                        then 'cancelled'
                    when (select true from ops.tasks t where t.run_id = r.id limit 1)
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

-- Plans that stay index-driven ---------------------------------------------------------------------

-- The lifecycle functions touch a batch's rows by primary key or through the claim's partial indexes;
-- a sequential scan is never the right plan for them. But they run cached generic plans (20261209000120),
-- and a plan made while a table was small (a new project, a bench) kept scanning the whole table per batch
-- as it grew, until an ANALYZE replaced it: the finalize's attempts UPDATE read all 4,000 attempts of the
-- bench for each batch of 50. With sequential scans priced out, the same plans are index probes at any size.
-- A scan that has no index to use instead (the few caps rows of the caps path) keeps its sequential scan,
-- priced as disabled: before PostgreSQL 18 that price is a large constant added to the plan's cost, far
-- above jit_above_cost, so JIT stays off in these functions (it compiled every caps-path statement, some
-- 200 ms each, for plans that run in microseconds).
alter function ops.claim_tasks(uuid, text[], text[], integer, integer, uuid) set enable_seqscan = off;
alter function ops.finalize_tasks(jsonb) set enable_seqscan = off;
alter function ops.refresh_runs_status(uuid[]) set enable_seqscan = off;
alter function ops.append_events(uuid, uuid, jsonb) set enable_seqscan = off;
alter function ops.claim_tasks(uuid, text[], text[], integer, integer, uuid) set jit = off;
alter function ops.finalize_tasks(jsonb) set jit = off;
alter function ops.refresh_runs_status(uuid[]) set jit = off;
alter function ops.append_events(uuid, uuid, jsonb) set jit = off;
alter function ops.refresh_runs_status(uuid[]) set plan_cache_mode = force_generic_plan;

-- Index entries per claim ---------------------------------------------------------------------------

-- A claim wrote 5 task index entries and 4 attempt index entries per task. Two go:
--  * tasks_leased (lease_expires_at of leased tasks) served the reaper's one query, every 5 s; the
--    reaper reads the leased tasks through tasks_active_executor (same rows, same predicate) instead.
--    A heartbeat moves only lease_expires_at, which no index holds any more: its UPDATE is now HOT.
--  * task_attempts' unique lease_token: every lookup of an attempt by its lease names the task too
--    (the primary key's first column, at most max_attempts rows), and the tokens are random UUIDs, whose
--    index entries landed on a random leaf page each (a full-page image in the WAL after each checkpoint).
drop index ops.tasks_leased;
alter table ops.task_attempts drop constraint task_attempts_lease_token_key;

-- The pool chart's spans (ops.pool_running_series, 20261126000800): attempts running at some point of
-- the window. Unchanged but for how they are found, now that finished_at has a BRIN index.
create or replace function ops.pool_running_series(p_minutes integer DEFAULT 60, p_step_seconds integer DEFAULT 60)
returns table (pool text, at timestamptz, running integer)
language plpgsql stable security definer
set search_path = ''
as $function$
declare
    v_step interval := make_interval(secs => greatest(p_step_seconds, 5));
    v_to timestamptz := date_bin(make_interval(secs => greatest(p_step_seconds, 5)), now(), 'epoch'::timestamptz);
    v_from timestamptz;
begin
    perform ops.require_member();
    v_from := v_to - make_interval(mins => least(greatest(p_minutes, 1), 1440));
    return query
    with spans as (
        -- Open attempts through the leased tasks (their partial index), finished ones through the BRIN
        -- index on finished_at: a BRIN range keeps saying it has nulls after they are gone.
        select coalesce(t.pool, 'default') as pool, a.claimed_at, a.finished_at
        from ops.tasks t join ops.task_attempts a on a.task_id = t.id and a.attempt = t.attempt
        where t.status in ('claimed', 'running') and a.finished_at is null and a.claimed_at < v_to + v_step
        union all
        select coalesce(t.pool, 'default') as pool, a.claimed_at, a.finished_at
        from ops.task_attempts a join ops.tasks t on t.id = a.task_id
        where a.finished_at >= v_from and a.claimed_at < v_to + v_step
    ), changes as (
        select s.pool, greatest(s.claimed_at, v_from) as at, 1 as delta from spans s
        union all
        select s.pool, s.finished_at, -1 from spans s where s.finished_at is not null
    ), levels as (
        -- At equal times finishes count first, so back-to-back tasks never look concurrent.
        select c.pool, c.at, c.delta,
               sum(c.delta) over (partition by c.pool order by c.at, c.delta rows unbounded preceding)::integer
                   as level
        from changes c
    ), pools as (
        select distinct s.pool from spans s
        union
        select distinct e.pool from ops.executors e where e.token_revoked_at is null
    ), buckets as (
        select g as at from generate_series(v_from, v_to, v_step) g
    )
    select pl.pool, b.at,
           greatest(
               coalesce((select l.level from levels l where l.pool = pl.pool and l.at <= b.at
                         order by l.at desc, l.delta desc limit 1), 0),
               coalesce((select max(l.level) from levels l where l.pool = pl.pool and l.at > b.at
                         and l.at < b.at + v_step), 0))
    from pools pl cross join buckets b
    order by pl.pool, b.at;
end;
$function$;
