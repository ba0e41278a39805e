-- Refusals in the access audit (issue 22, deliver 4): every statement the agent's access guard refuses for
-- a missing privilege is recorded: who (the task's principal, computed here, not taken from the agent),
-- which dataset and privilege, which policy decided ("no grant" when none did), when, which run and task.
-- The agent reports a refusal as a `sql.statement.refused` event whose data carries
-- {"access": {"dataset", "privilege", "reason"}}; a trigger on ops.events records it once (events are
-- deduplicated on (task, attempt, seq), so a re-sent event records nothing twice).
--
-- DESIGN decision 7: org-scoped with RLS; org admins read every refusal of their org, a user their own.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.access_refusals (
    id bigserial primary key,
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    run_id uuid not null references ops.runs (id),
    task_id uuid not null references ops.tasks (id),
    attempt integer,
    event_id bigint not null unique references ops.events (id),
    at timestamptz not null default now(),
    principal_kind text not null check (principal_kind in ('user', 'service_principal')),
    principal text not null,
    dataset text not null check (length(dataset) between 1 and 1000),
    dataset_id uuid references ops.datasets (id) on delete set null,
    privilege text not null check (privilege in ('read', 'write', 'admin')),
    policy text,
    reason text not null default '' check (length(reason) <= 1000)
);
create index access_refusals_org on ops.access_refusals (org_id, id desc);

alter table ops.access_refusals enable row level security;
grant select on ops.access_refusals to authenticated;
grant all on ops.access_refusals to service_role;
grant usage on sequence ops.access_refusals_id_seq to service_role;
create policy access_refusals_read on ops.access_refusals for select to authenticated
    using (ops.is_org_member(org_id) and (coalesce(ops.org_role(org_id), '') = 'admin'
           or (principal_kind = 'user' and lower(principal) = lower(ops.caller_email()))));

create function ops.record_access_refusal() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.tasks;
    v_kind text;
    v_name text;
    v_access jsonb := new.data -> 'access';
    v_reason text := left(coalesce(new.data -> 'access' ->> 'reason', ''), 1000);
begin
    if jsonb_typeof(v_access) <> 'object' or coalesce(v_access ->> 'privilege', '') not in ('read', 'write', 'admin')
       or coalesce(v_access ->> 'dataset', '') = '' or new.task_id is null then
        return null;  -- not a refusal for a missing privilege: nothing to record
    end if;
    select * into t from ops.tasks x where x.id = new.task_id;
    select p.kind, p.name into v_kind, v_name from ops.task_principal(new.task_id) p;
    insert into ops.access_refusals (org_id, project_id, run_id, task_id, attempt, event_id, at, principal_kind,
                                     principal, dataset, dataset_id, privilege, policy, reason)
    values (t.org_id, t.project_id, new.run_id, new.task_id, new.attempt, new.id, new.ts, v_kind, v_name,
            left(v_access ->> 'dataset', 1000),
            (select d.id from ops.datasets d where d.project_id = t.project_id
             and lower(d.name) = lower(v_access ->> 'dataset') order by d.id limit 1),
            v_access ->> 'privilege', substring(v_reason from '^denied by policy "([^"]+)"'), v_reason)
    on conflict (event_id) do nothing;
    return null;
end;
$$;

revoke execute on function ops.record_access_refusal() from public;

create trigger events_access_refusal after insert on ops.events
    for each row when (new.type = 'sql.statement.refused' and new.data ? 'access')
    execute function ops.record_access_refusal();

-- The access audit: changes to groups, service principals and policies (every org member), and refusals
-- (an org admin sees all of the org's, a user their own), newest first.
create or replace function ops.access_audit(p_org uuid, p_limit integer default 50)
returns table (id bigint, at timestamptz, actor text, entity text, action text, name text, detail jsonb)
language sql stable security definer
set search_path = ''
as $$
    select * from (
        select a.id, a.at, coalesce(u.email, a.actor), a.entity, a.action, a.detail ->> 'name', a.detail
        from ops.audit_log a left join ops.users u on u.id::text = a.actor
        where a.entity in ('access_policies', 'principal_groups', 'service_principals')
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
