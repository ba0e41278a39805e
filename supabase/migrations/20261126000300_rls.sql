-- Row-level security on every user-facing table, in Supabase's conventions (auth.uid()).
-- viewer: reads its projects' rows; operator: also submits and cancels runs; admin: configures.
-- Executors never connect as users: the API acts for them through trusted SQL functions.

grant usage on schema ops to anon, authenticated, service_role;

alter table ops.orgs enable row level security;
alter table ops.projects enable row level security;
alter table ops.environments enable row level security;
alter table ops.org_members enable row level security;
alter table ops.project_members enable row level security;
alter table ops.executors enable row level security;
alter table ops.runs enable row level security;
alter table ops.tasks enable row level security;
alter table ops.task_attempts enable row level security;
alter table ops.events enable row level security;
alter table ops.artifacts enable row level security;
alter table ops.routing_rules enable row level security;
alter table ops.caps enable row level security;
alter table ops.cap_usage enable row level security;
alter table ops.audit_log enable row level security;

-- Read access for signed-in users; RLS narrows it to their rows. Writes only where a policy allows.
grant select on ops.orgs, ops.projects, ops.environments, ops.org_members, ops.project_members,
    ops.executors, ops.runs, ops.tasks, ops.task_attempts, ops.events, ops.artifacts,
    ops.routing_rules, ops.caps, ops.cap_usage, ops.audit_log to authenticated;
grant insert on ops.runs to authenticated;
grant update (cancel_requested_at, cancel_requested_by) on ops.runs to authenticated;
grant insert, update, delete on ops.environments, ops.project_members, ops.routing_rules, ops.caps
    to authenticated;
grant update (name, description) on ops.projects to authenticated;
grant insert, update, delete on ops.org_members to authenticated;
grant all on all tables in schema ops to service_role;
grant usage, select on all sequences in schema ops to service_role;

-- Tenancy
create policy orgs_read on ops.orgs for select to authenticated
    using (ops.org_role(id) is not null);

create policy projects_read on ops.projects for select to authenticated
    using (ops.has_project_role(id, 'viewer'));
create policy projects_admin on ops.projects for update to authenticated
    using (ops.has_project_role(id, 'admin')) with check (ops.has_project_role(id, 'admin'));

create policy environments_read on ops.environments for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy environments_admin on ops.environments for all to authenticated
    using (ops.has_project_role(project_id, 'admin')) with check (ops.has_project_role(project_id, 'admin'));

create policy org_members_read on ops.org_members for select to authenticated
    using (user_id = auth.uid() or ops.org_role(org_id) = 'admin');
create policy org_members_admin on ops.org_members for all to authenticated
    using (ops.org_role(org_id) = 'admin') with check (ops.org_role(org_id) = 'admin');

create policy project_members_read on ops.project_members for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy project_members_admin on ops.project_members for all to authenticated
    using (ops.has_project_role(project_id, 'admin')) with check (ops.has_project_role(project_id, 'admin'));

-- Executors are shared infrastructure: visible to anyone with a membership, changed by the API only.
create policy executors_read on ops.executors for select to authenticated
    using (exists (select 1 from ops.project_members pm where pm.user_id = auth.uid())
           or exists (select 1 from ops.org_members om where om.user_id = auth.uid()));

-- Runs and their history
create policy runs_read on ops.runs for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy runs_submit on ops.runs for insert to authenticated
    with check (ops.has_project_role(project_id, 'operator'));
create policy runs_cancel on ops.runs for update to authenticated
    using (ops.has_project_role(project_id, 'operator')) with check (ops.has_project_role(project_id, 'operator'));

create policy tasks_read on ops.tasks for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy task_attempts_read on ops.task_attempts for select to authenticated
    using (run_id in (select r.id from ops.runs r));
create policy events_read on ops.events for select to authenticated
    using (run_id in (select r.id from ops.runs r));
create policy artifacts_read on ops.artifacts for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));

-- Governance: org-wide rows are configured by org admins, project rows by project admins.
create policy routing_rules_read on ops.routing_rules for select to authenticated
    using (ops.org_role(org_id) is not null);
create policy routing_rules_admin on ops.routing_rules for all to authenticated
    using (case when match_project_id is null then ops.org_role(org_id) = 'admin'
                else ops.has_project_role(match_project_id, 'admin') end)
    with check (case when match_project_id is null then ops.org_role(org_id) = 'admin'
                     else ops.has_project_role(match_project_id, 'admin') end);

create policy caps_read on ops.caps for select to authenticated
    using (ops.org_role(org_id) is not null);
create policy caps_admin on ops.caps for all to authenticated
    using (case when scope = 'project' then ops.has_project_role(project_id, 'admin')
                else ops.org_role(org_id) = 'admin' end)
    with check (case when scope = 'project' then ops.has_project_role(project_id, 'admin')
                     else ops.org_role(org_id) = 'admin' end);
create policy cap_usage_read on ops.cap_usage for select to authenticated
    using (cap_id in (select c.id from ops.caps c));

create policy audit_log_read on ops.audit_log for select to authenticated
    using (project_id is not null and ops.has_project_role(project_id, 'viewer'));

-- Functions: users may submit and cancel (each checks the caller's role); the executor-facing
-- lifecycle functions are for the API's trusted connection and the service role only.
revoke execute on all functions in schema ops from public;
grant execute on function
    ops.utc_today(), ops.role_rank(text), ops.project_role(uuid), ops.has_project_role(uuid, text),
    ops.org_role(uuid), ops.caller_is_end_user(), ops.require_project_role(uuid, text),
    ops.json_text_array(jsonb), ops.invalid(text, text), ops.validate_run_spec(jsonb),
    ops.submit_run(uuid, text, jsonb, jsonb, text, uuid, text, text, integer, text[], uuid),
    ops.cancel_run(uuid, text)
    to anon, authenticated;
grant execute on all functions in schema ops to service_role;
