-- The Control Room UI's read policies, fast with millions of rows (follows 20261126000800_ui).
--
-- The read policies of runs, tasks, artifacts (has_project_role per row) and of events and attempts
-- (run_id in (select id from runs): a scan of every visible run per row) decide exactly what they
-- did, but from the caller's project ids computed once per statement: `(select ...)` makes it an
-- InitPlan (Supabase's advice for RLS), and `project_id = any(...)` can use the project indexes.
-- At 1 M runs and 10 M events this takes the newest events of a run from minutes to a millisecond.

-- Every project the caller has any role on (viewer, operator or admin; directly or through its
-- org): the same projects as ops.has_project_role(id, 'viewer').
create function ops.viewable_projects() returns uuid[]
language sql stable security definer
set search_path = ''
as $$
    select coalesce(array_agg(distinct x.id), '{}')
    from (
        select pm.project_id as id from ops.project_members pm where pm.user_id = auth.uid()
        union all
        select p.id from ops.projects p join ops.org_members om on om.org_id = p.org_id
        where om.user_id = auth.uid()
    ) x
$$;

-- The project of a run, by primary key (definer: no RLS recursion into ops.runs per row).
create function ops.run_project(p_run uuid) returns uuid
language sql stable security definer
set search_path = ''
as $$ select r.project_id from ops.runs r where r.id = p_run $$;

revoke execute on function ops.viewable_projects(), ops.run_project(uuid) from public;
grant execute on function ops.viewable_projects(), ops.run_project(uuid) to authenticated, service_role;

drop policy runs_read on ops.runs;
create policy runs_read on ops.runs for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy tasks_read on ops.tasks;
create policy tasks_read on ops.tasks for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy artifacts_read on ops.artifacts;
create policy artifacts_read on ops.artifacts for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy events_read on ops.events;
create policy events_read on ops.events for select to authenticated
    using (ops.run_project(run_id) = any ((select ops.viewable_projects())::uuid[]));

drop policy task_attempts_read on ops.task_attempts;
create policy task_attempts_read on ops.task_attempts for select to authenticated
    using (ops.run_project(run_id) = any ((select ops.viewable_projects())::uuid[]));
