-- The policy editor's live preview (issue 22, deliver 4): "as principal X, this query returns…". A preview is
-- an ordinary one-task DuckDB (or Trino) run whose task acts as the chosen principal (a user, a service
-- principal, or "a member of group X" holding no other group) instead of its requester: the agent's access
-- guard then applies X's refusals, row filters and masks through the same rewrite, and the run goes through
-- the usual caps, events, refusal audit and result checks.
--
-- Only a policy editor of the previewed dataset (an org admin, or a holder of admin on the dataset such as
-- its owner) may start one, for a run they requested in the same transaction whose tasks nobody claimed yet
-- (so no task of it ever runs as its requester). Each preview is audited (who previewed as whom).
--
-- DESIGN decision 7: org-scoped with RLS (org admins and the previewer read it); written only by
-- ops.start_policy_preview (SECURITY DEFINER).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.policy_previews (
    run_id uuid primary key references ops.runs (id),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    dataset_id uuid references ops.datasets (id) on delete set null,
    principal_kind text not null check (principal_kind in ('user', 'service_principal', 'group')),
    principal text not null check (length(principal) between 1 and 320),
    requested_by uuid references ops.users (id),
    requested_by_name text not null,
    created_at timestamptz not null default now()
);
create index policy_previews_org on ops.policy_previews (org_id, created_at desc);

alter table ops.policy_previews enable row level security;
grant select on ops.policy_previews to authenticated;
grant all on ops.policy_previews to service_role;
create policy policy_previews_read on ops.policy_previews for select to authenticated
    using (ops.is_org_member(org_id) and (requested_by = auth.uid() or coalesce(ops.org_role(org_id), '') = 'admin'));

-- Who a task acts as, with its groups: a preview's principal; else its template's service principal; else
-- the user who requested the run. A group preview acts as "(a member of group X)" holding group X only.
-- preview: the task is a policy preview (its agent's access guard then lets it only read).
create function ops.task_acts_as(p_task uuid, out kind text, out name text, out groups text[], out preview boolean)
language sql stable security definer
set search_path = ''
as $$
    with who as (
        select t.org_id,
               case when pv.principal_kind is not null then
                        case when pv.principal_kind = 'user' then 'user' else 'service_principal' end
                    when jt.run_as is not null then 'service_principal' else 'user' end as kind,
               case when pv.principal_kind = 'group' then format('(a member of group %s)', pv.principal)
                    else coalesce(pv.principal, jt.run_as, u.email, r.requested_by_name, 'unknown') end as name,
               pv.principal_kind as preview_kind, pv.principal as preview_principal
        from ops.tasks t join ops.runs r on r.id = t.run_id
        left join ops.policy_previews pv on pv.run_id = r.id
        left join ops.job_templates jt on jt.id = r.template_id
        left join ops.users u on u.id = r.requested_by
        where t.id = p_task
    )
    select w.kind, w.name,
           case when w.preview_kind = 'group' then array[w.preview_principal]
                else ops.principal_groups_of(w.org_id, w.kind, w.name) end,
           w.preview_kind is not null
    from who w
$$;

create or replace function ops.task_principal(p_task uuid, out kind text, out name text)
language sql stable security definer
set search_path = ''
as $$
    select a.kind, a.name from ops.task_acts_as(p_task) a
$$;

-- The decisions a task is held to: its principal's (with the groups above) on every dataset of its project.
create function ops.task_access_decisions(p_task uuid) returns setof jsonb
language sql stable security definer
set search_path = ''
as $$
    select ops.access_decision(d, t.org_id, a.kind, a.name, a.groups)
    from ops.tasks t cross join lateral ops.task_acts_as(t.id) a
    join ops.datasets d on d.project_id = t.project_id
    where t.id = p_task
    order by d.name, d.id
$$;

-- Make the caller's new run (p_run, all of its tasks SQL tasks still unclaimed) a preview of what the
-- principal would get. p_dataset is the dataset whose policies the caller edits (its policy editors only).
create function ops.start_policy_preview(p_run uuid, p_dataset uuid, p_principal_kind text, p_principal text,
                                         p_by text default null)
returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    r ops.runs;
    d ops.datasets;
    v_org uuid;
    v_principal text := btrim(coalesce(p_principal, ''));
begin
    select * into r from ops.runs x where x.id = p_run for update;
    if r.id is null then
        raise exception using errcode = 'LH404', column = 'run', message = format('run %s does not exist', p_run);
    end if;
    select x.* into d from ops.datasets x where x.id = p_dataset and x.project_id = r.project_id;
    if d.id is null then
        perform ops.invalid('dataset', 'the previewed dataset must belong to the run''s project');
    end if;
    v_org := r.org_id;
    if ops.caller_is_end_user() and r.requested_by is distinct from auth.uid() then
        raise exception using errcode = 'LH403', message = 'permission denied: a preview is a run you requested';
    end if;
    perform ops.require_policy_editor(v_org, 'dataset', d.id::text);
    if exists (select 1 from ops.tasks t where t.run_id = r.id
               and (t.status not in ('pending', 'queued') or t.attempt > 0 or t.engine not in ('duckdb', 'trino'))) then
        perform ops.invalid('run', 'a preview is a new run of DuckDB or Trino tasks that no agent has claimed');
    end if;
    if exists (select 1 from ops.policy_previews x where x.run_id = r.id) then
        perform ops.invalid('run', 'this run is a preview already');
    end if;
    if p_principal_kind = 'user' then
        v_principal := lower(v_principal);
        if not exists (
            select 1 from ops.users u where lower(u.email) = v_principal and (
                exists (select 1 from ops.org_members om where om.org_id = v_org and om.user_id = u.id)
                or exists (select 1 from ops.project_members pm join ops.projects p on p.id = pm.project_id
                           where p.org_id = v_org and pm.user_id = u.id))) then
            perform ops.invalid('principal', format('no member of this org has the e-mail "%s"', v_principal));
        end if;
    elsif p_principal_kind = 'service_principal' then
        if not exists (select 1 from ops.service_principals s where s.org_id = v_org and s.name = v_principal) then
            perform ops.invalid('principal', format('no service principal "%s" in this org', v_principal));
        end if;
    elsif p_principal_kind = 'group' then
        if not exists (select 1 from ops.principal_groups g where g.org_id = v_org and g.name = v_principal) then
            perform ops.invalid('principal', format('no group "%s" in this org', v_principal));
        end if;
    else
        perform ops.invalid('principal_kind', 'one of user, service_principal, group');
    end if;
    insert into ops.policy_previews (run_id, org_id, project_id, dataset_id, principal_kind, principal, requested_by,
                                     requested_by_name)
    values (r.id, v_org, r.project_id, d.id, p_principal_kind, v_principal, r.requested_by,
            coalesce(r.requested_by_name, ops.ui_actor(p_by)));
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (ops.ui_actor(p_by), 'policy_previews', r.id, r.project_id, 'preview',
            jsonb_build_object('org_id', v_org, 'name', d.name, 'principal_kind', p_principal_kind,
                               'principal', v_principal, 'run_id', r.id));
end;
$$;

-- The access audit also lists previews (who previewed which dataset as whom).
create or replace function ops.access_audit(p_org uuid, p_limit integer default 50)
returns table (id bigint, at timestamptz, actor text, entity text, action text, name text, detail jsonb)
language sql stable security definer
set search_path = ''
as $$
    select * from (
        select a.id, a.at, coalesce(u.email, a.actor), a.entity, a.action, a.detail ->> 'name', a.detail
        from ops.audit_log a left join ops.users u on u.id::text = a.actor
        where a.entity in ('access_policies', 'principal_groups', 'service_principals', 'policy_previews')
          and a.detail ->> 'org_id' = p_org::text and (not ops.caller_is_end_user() or ops.is_org_member(p_org))
        union all
        select r.id, r.at, r.principal, 'access_refusals', 'refuse', r.dataset,
               jsonb_build_object('org_id', r.org_id, 'privilege', r.privilege,
                                  'policy', coalesce(r.policy, 'no grant'), 'reason', r.reason,
                                  'principal_kind', r.principal_kind, 'run_id', r.run_id, 'task_id', r.task_id)
        from ops.access_refusals r
        where r.org_id = p_org and (not ops.caller_is_end_user() or (ops.is_org_member(p_org)
              and (coalesce(ops.org_role(p_org), '') = 'admin'
                   or (r.principal_kind = 'user' and lower(r.principal) = lower(ops.caller_email())))))
    ) trail
    order by trail.at desc, trail.id desc limit least(greatest(p_limit, 1), 500)
$$;

revoke execute on function ops.task_acts_as(uuid), ops.task_access_decisions(uuid),
    ops.start_policy_preview(uuid, uuid, text, text, text) from public;
grant execute on function ops.start_policy_preview(uuid, uuid, text, text, text) to authenticated, service_role;
grant execute on function ops.task_acts_as(uuid), ops.task_access_decisions(uuid) to service_role;
