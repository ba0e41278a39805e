-- Sign-in throttling and user API tokens with a role ceiling (issue 14).
--
-- Failed sign-ins are counted per account and per client address over a window, in the database so
-- every control-room replica sees the same count; only trusted callers read or write them.
-- An API token may carry a role ceiling: a request made with it acts with at most that role on any
-- project or org, whatever the person's membership (the JWT claim `lakehouse_role_ceiling`).

create table ops.sign_in_failures (
    id bigserial primary key,
    at timestamptz not null default now(),
    email text not null,
    client text not null default ''
);
create index sign_in_failures_email on ops.sign_in_failures (email, at);
create index sign_in_failures_client on ops.sign_in_failures (client, at);

alter table ops.sign_in_failures enable row level security;
grant all on ops.sign_in_failures to service_role;
grant usage, select on sequence ops.sign_in_failures_id_seq to service_role;

alter table ops.api_tokens add column role_ceiling text
    check (role_ceiling is null or role_ceiling in ('viewer', 'operator', 'admin'));
revoke select on ops.api_tokens from authenticated;
grant select (id, user_id, name, token_prefix, created_at, expires_at, last_used_at, revoked_at, role_ceiling)
    on ops.api_tokens to authenticated;

-- The caller's role, capped by the role ceiling of the token it came with (if any).
create function ops.cap_role(p_role text) returns text
language sql stable
set search_path = ''
as $$
    select case
        when p_role is null then null
        when coalesce(auth.jwt() ->> 'lakehouse_role_ceiling', '') = '' then p_role
        when ops.role_rank(p_role) > ops.role_rank(auth.jwt() ->> 'lakehouse_role_ceiling')
            then auth.jwt() ->> 'lakehouse_role_ceiling'
        else p_role end
$$;

create or replace function ops.project_role(p_project uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select ops.cap_role(role) from (
        select pm.role from ops.project_members pm
        where pm.project_id = p_project and pm.user_id = auth.uid()
        union all
        select om.role from ops.org_members om
        join ops.projects p on p.org_id = om.org_id
        where p.id = p_project and om.user_id = auth.uid()
    ) roles
    order by ops.role_rank(role) desc
    limit 1
$$;

create or replace function ops.org_role(p_org uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select ops.cap_role(role) from (
        select om.role from ops.org_members om where om.org_id = p_org and om.user_id = auth.uid()
        union all
        select pm.role from ops.project_members pm
        join ops.projects p on p.id = pm.project_id
        where p.org_id = p_org and pm.user_id = auth.uid() and pm.role = 'viewer'
    ) roles
    order by ops.role_rank(role) desc
    limit 1
$$;

create or replace function ops.is_any_org_admin() returns boolean
language sql stable security definer
set search_path = ''
as $$
    select exists (select 1 from ops.org_members om where om.user_id = auth.uid() and om.role = 'admin')
        and ops.cap_role('admin') = 'admin'
$$;

revoke execute on function ops.cap_role(text) from public;
grant execute on function ops.cap_role(text) to anon, authenticated, service_role;
