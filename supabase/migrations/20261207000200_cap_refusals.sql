-- The last refusals each cap caused, for the caps page, API and CLI (issue 19, item 4).
--
-- Read from what the layers record:
--   engine: `sql.statement.refused` events (a query over scanned_bytes_per_query, refused before it ran);
--   agent:  `limits.output_exceeded` events (max_output_bytes) and attempts that finished `timed_out`
--           where a max_runtime_s cap, not the spec's own timeout_s, was the limit;
--   claim:  the queued tasks a full concurrent_tasks or compute_seconds_per_day cap holds back now (the
--           claim leaves them queued and records nothing, so these are read live).
-- Each event is attributed to the tightest enabled cap of its kind that applies to the task (the limit the
-- claim handed the agent, ops.task_limits). A refused submit creates no run, so submit refusals are only
-- counted (ops.cap_usage.breaches, shown beside each cap).
--
-- Members of the org only, and an end user sees the refusals in the projects they can see (as the runs
-- and tasks policies decide, ops.viewable_projects).

create index events_cap_refusals on ops.events (id)
where type in ('sql.statement.refused', 'limits.output_exceeded')
   or (type = 'finish' and data ->> 'outcome' = 'timed_out');

create function ops.cap_refusals(p_org uuid, p_per_cap integer default 5)
returns table (
    cap_id uuid, at timestamptz, layer text, run_id uuid, run_name text, task_key text, attempt integer,
    message text
)
language sql stable security definer
set search_path = ''
as $$
    with caller as (
        select case when ops.caller_is_end_user() then (select ops.viewable_projects())::uuid[] end as projects
        where not ops.caller_is_end_user() or ops.is_org_member(p_org)
    ), refused as (
        -- The predicate repeats the index's so the planner can use it.
        select e.ts, e.run_id, e.attempt, e.message, t,
               case e.type when 'sql.statement.refused' then 'scanned_bytes_per_query'
                           when 'limits.output_exceeded' then 'max_output_bytes'
                           else 'max_runtime_s' end as kind
        from caller v
        join ops.tasks t on v.projects is null or t.project_id = any(v.projects)
        join ops.events e on e.task_id = t.id
        where (e.type in ('sql.statement.refused', 'limits.output_exceeded')
               or (e.type = 'finish' and e.data ->> 'outcome' = 'timed_out'))
          and t.org_id = p_org
          and e.ts > now() - interval '30 days'
    ), attributed as (
        select (select c.id from ops.caps c
                where c.org_id = p_org and c.enabled and c.kind = r.kind and ops.cap_applies(c, r.t)
                  and (r.kind <> 'max_runtime_s' or (r.t).timeout_s is null or c.limit_value <= (r.t).timeout_s)
                order by c.limit_value, c.id
                limit 1) as cap_id,
               r.ts, case when r.kind = 'scanned_bytes_per_query' then 'engine' else 'agent' end as layer,
               r.run_id, (r.t).key as task_key, r.attempt, r.message
        from refused r
    ), held as (
        select c.id as cap_id, q.queued_at as ts, 'claim' as layer, q.run_id, q.key as task_key,
               null::integer as attempt,
               format('held in the queue: %s at its %s cap "%s" (%s)',
                      case c.scope when 'org' then 'org' else c.scope end,
                      case c.kind when 'concurrent_tasks' then 'concurrency' else 'compute' end,
                      c.name,
                      case c.kind when 'concurrent_tasks' then format('%s running of %s', n.running, c.limit_value)
                           else format('%s s used today of %s', round(coalesce(u.compute_seconds, 0)), c.limit_value)
                      end) as message
        from caller v
        cross join ops.caps c
        left join ops.cap_usage u on u.cap_id = c.id and u.day = ops.utc_today()
        cross join lateral (
            select count(*) as running from ops.tasks x
            where c.kind = 'concurrent_tasks' and x.org_id = p_org and x.status in ('claimed', 'running')
              and ops.cap_applies(c, x)
        ) n
        cross join lateral (
            select x.run_id, x.key, x.queued_at from ops.tasks x
            where x.org_id = p_org and x.status = 'queued' and ops.cap_applies(c, x)
              and (v.projects is null or x.project_id = any(v.projects))
            order by x.queued_at
            limit p_per_cap
        ) q
        where c.org_id = p_org and c.enabled
          and ((c.kind = 'concurrent_tasks' and n.running >= c.limit_value)
               or (c.kind = 'compute_seconds_per_day' and coalesce(u.compute_seconds, 0) >= c.limit_value))
    ), ranked as (
        select a.*, row_number() over (partition by a.cap_id order by a.ts desc) as n
        from (select cap_id, ts, layer, run_id, task_key, attempt, message from attributed where cap_id is not null
              union all
              select cap_id, ts, layer, run_id, task_key, attempt, message from held) a
    )
    select k.cap_id, k.ts, k.layer, k.run_id, r.name, k.task_key, k.attempt, k.message
    from ranked k join ops.runs r on r.id = k.run_id
    where k.n <= p_per_cap
    order by k.cap_id, k.ts desc
$$;

revoke execute on function ops.cap_refusals(uuid, integer) from public;
grant execute on function ops.cap_refusals(uuid, integer) to authenticated, service_role;
