-- Access policies that are enforced (issue 22): org-level groups with members, service principals (a
-- job template may run as one), and policies on datasets, schemas (name prefixes) and tags: grants and
-- denies of read/write/admin, row filters and column masks. ops.access_decision computes what one
-- principal may do with one dataset (with the reason); the executor endpoint hands an SQL task the
-- decisions that restrict it, the catalog's RLS hides what the viewer may not read.
--
-- DESIGN decision 7: every table has org_id and RLS; `authenticated` gets SELECT; writes go through
-- the SECURITY DEFINER functions below (org admins, or the dataset's owner for its own policies),
-- each change audited in ops.audit_log.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.principal_groups (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    description text not null default '' check (length(description) <= 1000),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name)
);

-- A member is a user (by e-mail) or a service principal (by name).
create table ops.principal_group_members (
    group_id uuid not null references ops.principal_groups (id) on delete cascade,
    org_id uuid not null references ops.orgs (id),
    member_kind text not null check (member_kind in ('user', 'service_principal')),
    member text not null check (length(member) between 1 and 320),
    added_at timestamptz not null default now(),
    primary key (group_id, member_kind, member)
);
create index principal_group_members_member on ops.principal_group_members (org_id, member_kind, lower(member));

create table ops.service_principals (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null check (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    description text not null default '' check (length(description) <= 1000),
    created_at timestamptz not null default now(),
    unique (org_id, name)
);

-- One policy: kind grant/deny (a privilege), row_filter (a SQL predicate) or column_mask; on a dataset
-- (target = its id), a schema (target = a name prefix such as "warehouse.main") or a tag; for everyone,
-- a group, a user (e-mail) or a service principal.
create table ops.access_policies (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    kind text not null check (kind in ('grant', 'deny', 'row_filter', 'column_mask')),
    target_kind text not null check (target_kind in ('dataset', 'schema', 'tag')),
    target text not null check (length(target) between 1 and 1000),
    principal_kind text not null check (principal_kind in ('everyone', 'group', 'user', 'service_principal')),
    principal text not null default '' check (length(principal) <= 320),
    privilege text check (privilege in ('read', 'write', 'admin')),
    row_filter text check (length(row_filter) <= 4000),
    mask_column text check (length(mask_column) <= 200),
    mask_kind text check (mask_kind in ('null', 'hash', 'redact', 'partial', 'expression')),
    mask_expression text check (length(mask_expression) <= 4000),
    description text not null default '' check (length(description) <= 1000),
    created_by text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (org_id, name),
    check ((kind in ('grant', 'deny')) = (privilege is not null)),
    check ((kind = 'row_filter') = (row_filter is not null)),
    check ((kind = 'column_mask') = (mask_kind is not null)),
    check ((mask_kind = 'expression') = (mask_expression is not null) or mask_kind is null)
);
create index access_policies_org on ops.access_policies (org_id, target_kind, target);

-- A job template may run as a service principal of its org; its runs then act as it, not as the requester.
alter table ops.job_templates add column run_as text check (run_as ~ '^[a-z0-9][a-z0-9_.-]{0,62}$');

alter table ops.principal_groups enable row level security;
alter table ops.principal_group_members enable row level security;
alter table ops.service_principals enable row level security;
alter table ops.access_policies enable row level security;
grant select on ops.principal_groups, ops.principal_group_members, ops.service_principals, ops.access_policies
    to authenticated;
grant all on ops.principal_groups, ops.principal_group_members, ops.service_principals, ops.access_policies
    to service_role;
create policy principal_groups_read on ops.principal_groups for select to authenticated
    using (ops.is_org_member(org_id));
create policy principal_group_members_read on ops.principal_group_members for select to authenticated
    using (ops.is_org_member(org_id));
create policy service_principals_read on ops.service_principals for select to authenticated
    using (ops.is_org_member(org_id));
create policy access_policies_read on ops.access_policies for select to authenticated
    using (ops.is_org_member(org_id));

-- Decisions ---------------------------------------------------------------------------------------------

create function ops.privilege_rank(p_privilege text) returns integer
language sql immutable
set search_path = ''
as $$
    select case p_privilege when 'read' then 1 when 'write' then 2 when 'admin' then 3 end
$$;

-- The groups a principal belongs to in an org.
create function ops.principal_groups_of(p_org uuid, p_kind text, p_name text) returns text[]
language sql stable security definer
set search_path = ''
as $$
    select coalesce(array_agg(distinct g.name order by g.name), '{}')
    from ops.principal_group_members m join ops.principal_groups g on g.id = m.group_id
    where m.org_id = p_org and m.member_kind = p_kind and lower(m.member) = lower(p_name)
$$;

-- Whether a policy's target covers a dataset: the dataset itself, a schema prefix of its name, or a
-- tag the dataset carries (a tag policy also covers the columns carrying the tag: see column masks).
create function ops.policy_covers(p ops.access_policies, d ops.datasets) returns boolean
language sql immutable
set search_path = ''
as $$
    select case p.target_kind
        when 'dataset' then p.target = d.id::text
        when 'schema' then lower(d.name) = lower(p.target) or starts_with(lower(d.name), lower(p.target) || '.')
        else (jsonb_typeof(d.metadata -> 'tags') = 'array' and d.metadata -> 'tags' ? p.target)
             or (p.kind = 'column_mask' and p.mask_column is null and exists (
                 select 1 from jsonb_array_elements(d.columns) c
                 where jsonb_typeof(c -> 'tags') = 'array' and c -> 'tags' ? p.target))
    end
$$;

create function ops.policy_names(p ops.access_policies, p_kind text, p_name text, p_groups text[]) returns boolean
language sql immutable
set search_path = ''
as $$
    select p.principal_kind = 'everyone'
        or (p.principal_kind = 'group' and p.principal = any(p_groups))
        or (p.principal_kind = p_kind and lower(p.principal) = lower(p_name))
$$;

-- What principal (p_kind 'user' with an e-mail, or 'service_principal' with a name) may do with one
-- dataset: {"dataset_id", "name", "namespace", "columns", "read", "write", "admin", "reasons": {...},
-- "row_filters": [{"policy", "predicate"}], "masks": [{"policy", "column", "kind", "expression"}]}.
-- An explicit deny wins; then ownership and the org admin role; then a grant; a dataset no grant
-- covers is open to the project's members (who may submit tasks at all).
create function ops.access_decision(d ops.datasets, p_org uuid, p_kind text, p_name text, p_groups text[])
returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_applicable ops.access_policies[];
    v_governed boolean;
    v_owner boolean := p_kind = 'user' and lower(coalesce(d.owner, '')) = lower(p_name);
    v_org_admin boolean;
    v_result jsonb := '{}';
    v_reasons jsonb := '{}';
    v_privilege text;
    v_rank integer;
    v_hit ops.access_policies;
    v_filters jsonb := '[]';
    v_masks jsonb := '[]';
    v_masked text[] := '{}';
    v_column text;
    p ops.access_policies;
    v_who text := case when p_kind = 'service_principal' then 'service principal ' else '' end || p_name;
begin
    select coalesce(array_agg(x order by x.created_at, x.id), '{}') into v_applicable
    from ops.access_policies x
    where x.org_id = p_org and ops.policy_covers(x, d) and ops.policy_names(x, p_kind, p_name, p_groups);
    select exists (select 1 from ops.access_policies x where x.org_id = p_org and x.kind = 'grant'
                   and ops.policy_covers(x, d)) into v_governed;
    v_org_admin := p_kind = 'user' and exists (
        select 1 from ops.org_members om join ops.users u on u.id = om.user_id
        where om.org_id = p_org and om.role = 'admin' and lower(u.email) = lower(p_name));
    foreach v_privilege in array array['read', 'write', 'admin'] loop
        v_rank := ops.privilege_rank(v_privilege);
        v_hit := null;
        select * into v_hit from unnest(v_applicable) a
        where a.kind = 'deny' and ops.privilege_rank(a.privilege) <= v_rank limit 1;
        if v_hit.id is not null then
            v_result := v_result || jsonb_build_object(v_privilege, false);
            v_reasons := v_reasons || jsonb_build_object(v_privilege, format('denied by policy "%s" (deny %s to %s %s)',
                v_hit.name, v_hit.privilege, v_hit.principal_kind, nullif(v_hit.principal, '')));
            continue;
        end if;
        if v_owner or v_org_admin then
            v_result := v_result || jsonb_build_object(v_privilege, true);
            v_reasons := v_reasons || jsonb_build_object(v_privilege,
                case when v_owner then format('%s owns the dataset', p_name) else format('%s is an org admin', p_name) end);
            continue;
        end if;
        select * into v_hit from unnest(v_applicable) a
        where a.kind = 'grant' and ops.privilege_rank(a.privilege) >= v_rank limit 1;
        if v_hit.id is not null then
            v_result := v_result || jsonb_build_object(v_privilege, true);
            v_reasons := v_reasons || jsonb_build_object(v_privilege, format('granted by policy "%s" (%s to %s %s)',
                v_hit.name, v_hit.privilege, v_hit.principal_kind, nullif(v_hit.principal, '')));
        elsif not v_governed and v_rank < 3 then
            v_result := v_result || jsonb_build_object(v_privilege, true);
            v_reasons := v_reasons || jsonb_build_object(v_privilege,
                'no grant covers this dataset: it is open to the members of its project');
        else
            v_result := v_result || jsonb_build_object(v_privilege, false);
            v_reasons := v_reasons || jsonb_build_object(v_privilege, format(
                'no policy grants %s on this dataset to %s or to a group of theirs (%s)', v_privilege, v_who,
                coalesce(nullif(array_to_string(p_groups, ', '), ''), 'none')));
        end if;
    end loop;
    foreach p in array v_applicable loop
        if p.kind = 'row_filter' then
            v_filters := v_filters || jsonb_build_array(jsonb_build_object('policy', p.name, 'predicate', p.row_filter));
        elsif p.kind = 'column_mask' then
            for v_column in
                select p.mask_column where p.mask_column is not null
                union all
                select c ->> 'name' from jsonb_array_elements(d.columns) c
                where p.mask_column is null and p.target_kind = 'tag'
                  and jsonb_typeof(c -> 'tags') = 'array' and c -> 'tags' ? p.target
            loop
                -- The first mask of a column wins (oldest policy first): one deterministic answer.
                if lower(v_column) <> all(v_masked) then
                    v_masked := v_masked || lower(v_column);
                    v_masks := v_masks || jsonb_build_array(jsonb_build_object(
                        'policy', p.name, 'column', v_column, 'kind', p.mask_kind, 'expression', p.mask_expression));
                end if;
            end loop;
        end if;
    end loop;
    return jsonb_build_object(
        'dataset_id', d.id, 'name', d.name, 'namespace', d.namespace,
        'columns', coalesce((select jsonb_agg(c -> 'name') from jsonb_array_elements(d.columns) c), '[]'),
        'reasons', v_reasons, 'row_filters', v_filters, 'masks', v_masks, 'groups', to_jsonb(p_groups)
    ) || v_result;
end;
$$;

-- The decisions for a principal on the datasets of a project (all, or those listed). Org members only.
create function ops.access_decisions(p_project uuid, p_kind text, p_name text, p_datasets uuid[] default null)
returns setof jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
    v_org uuid;
    v_groups text[];
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if v_org is null or (ops.caller_is_end_user() and not ops.is_org_member(v_org)) then
        return;
    end if;
    if p_kind not in ('user', 'service_principal') then
        perform ops.invalid('principal_kind', 'user or service_principal');
    end if;
    v_groups := ops.principal_groups_of(v_org, p_kind, p_name);
    return query
        select ops.access_decision(d, v_org, p_kind, p_name, v_groups)
        from ops.datasets d
        where d.project_id = p_project and (p_datasets is null or d.id = any(p_datasets))
        order by d.name, d.id;
end;
$$;

-- One decision for an explicit group list (the simulator's "a member of group X", the Trino export's
-- "everyone"): members of the dataset's org only.
create function ops.access_decision_for(p_dataset uuid, p_kind text, p_name text, p_groups text[])
returns jsonb
language sql stable security definer
set search_path = ''
as $$
    select ops.access_decision(d, p.org_id, p_kind, p_name, coalesce(p_groups, '{}'))
    from ops.datasets d join ops.projects p on p.id = d.project_id
    where d.id = p_dataset and (not ops.caller_is_end_user() or ops.is_org_member(p.org_id))
$$;

-- Who a task acts as: its template's service principal, else the user who requested the run.
create function ops.task_principal(p_task uuid, out kind text, out name text)
language sql stable security definer
set search_path = ''
as $$
    select case when jt.run_as is not null then 'service_principal' else 'user' end,
           coalesce(jt.run_as, u.email, r.requested_by_name, 'unknown')
    from ops.tasks t join ops.runs r on r.id = t.run_id
    left join ops.job_templates jt on jt.id = r.template_id
    left join ops.users u on u.id = r.requested_by
    where t.id = p_task
$$;

-- Whether the signed-in user may read a dataset (trusted callers: yes). The catalog's RLS uses it.
create function ops.may_read_dataset(p_dataset uuid) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
    d ops.datasets;
    v_org uuid;
    v_email text;
begin
    if not ops.caller_is_end_user() then
        return true;
    end if;
    select * into d from ops.datasets x where x.id = p_dataset;
    if d.id is null then
        return false;
    end if;
    select p.org_id into v_org from ops.projects p where p.id = d.project_id;
    if not exists (select 1 from ops.access_policies x where x.org_id = v_org and x.kind in ('grant', 'deny')) then
        return true;  -- no grants nor denies in the org: nothing to hide (the common, fast case)
    end if;
    select u.email into v_email from ops.users u where u.id = auth.uid();
    if v_email is null then
        return false;
    end if;
    return coalesce((ops.access_decision(d, v_org, 'user', v_email,
                                         ops.principal_groups_of(v_org, 'user', v_email)) ->> 'read')::boolean, false);
end;
$$;

drop policy datasets_read on ops.datasets;
create policy datasets_read on ops.datasets for select to authenticated
    using (ops.has_project_role(project_id, 'viewer') and ops.may_read_dataset(id));
drop policy lineage_edges_read on ops.lineage_edges;
create policy lineage_edges_read on ops.lineage_edges for select to authenticated
    using (ops.has_project_role(project_id, 'viewer') and ops.may_read_dataset(upstream_id)
           and ops.may_read_dataset(downstream_id));

-- Writes -----------------------------------------------------------------------------------------------

create function ops.caller_email() returns text
language sql stable security definer
set search_path = ''
as $$
    select u.email from ops.users u where u.id = auth.uid()
$$;

create function ops.require_org(p_org uuid) returns void
language plpgsql stable
set search_path = ''
as $$
begin
    if not exists (select 1 from ops.orgs o where o.id = p_org) then
        raise exception using errcode = 'LH404', column = 'org', message = format('org %s does not exist', p_org);
    end if;
end;
$$;

-- Create or replace a group with exactly these members ([{"kind": "user"|"service_principal", "name"}]).
create function ops.save_principal_group(p_org uuid, p_name text, p_description text, p_members jsonb,
                                         p_by text default null)
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    v_id uuid;
    v_item jsonb;
    v_index integer;
    v_before jsonb;
begin
    perform ops.require_org(p_org);
    perform ops.require_org_admin(p_org);
    if coalesce(p_name, '') !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
        perform ops.invalid('name', 'a group name: lower-case letters, digits, ., - and _ (e.g. analysts)');
    end if;
    if p_members is null or jsonb_typeof(p_members) <> 'array' then
        perform ops.invalid('members', 'a JSON array of {"kind": "user"|"service_principal", "name"}');
    end if;
    for v_item, v_index in select e, i::integer from jsonb_array_elements(p_members) with ordinality x(e, i) loop
        if coalesce(v_item ->> 'kind', '') not in ('user', 'service_principal') then
            perform ops.invalid(format('members[%s].kind', v_index - 1), 'user or service_principal');
        end if;
        if v_item ->> 'kind' = 'user' and coalesce(v_item ->> 'name', '') !~ '^[^@[:space:]]+@[^@[:space:]]+$' then
            perform ops.invalid(format('members[%s].name', v_index - 1), 'a user''s e-mail address');
        end if;
        if v_item ->> 'kind' = 'service_principal' and not exists (
            select 1 from ops.service_principals s where s.org_id = p_org and s.name = v_item ->> 'name') then
            perform ops.invalid(format('members[%s].name', v_index - 1),
                                'no such service principal in this org: create it first');
        end if;
    end loop;
    insert into ops.principal_groups as g (org_id, name, description)
    values (p_org, p_name, coalesce(p_description, ''))
    on conflict (org_id, name) do update set description = excluded.description, updated_at = now()
    returning g.id into v_id;
    select coalesce(jsonb_agg(jsonb_build_object('kind', m.member_kind, 'name', m.member)
                              order by m.member_kind, m.member), '[]')
    into v_before from ops.principal_group_members m where m.group_id = v_id;
    delete from ops.principal_group_members m where m.group_id = v_id;
    insert into ops.principal_group_members (group_id, org_id, member_kind, member)
    select distinct v_id, p_org, e ->> 'kind', case when e ->> 'kind' = 'user' then lower(e ->> 'name') else e ->> 'name' end
    from jsonb_array_elements(p_members) e;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (v_by, 'principal_groups', v_id, 'save', jsonb_build_object('org_id', p_org, 'name', p_name,
            'before', v_before, 'after', p_members));
    return v_id;
end;
$$;

create function ops.delete_principal_group(p_org uuid, p_name text, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_org(p_org);
    perform ops.require_org_admin(p_org);
    delete from ops.principal_groups g where g.org_id = p_org and g.name = p_name returning g.id into v_id;
    if v_id is null then
        raise exception using errcode = 'LH404', column = 'name', message = format('no group "%s" in this org', p_name);
    end if;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (ops.ui_actor(p_by), 'principal_groups', v_id, 'delete', jsonb_build_object('org_id', p_org, 'name', p_name));
end;
$$;

create function ops.save_service_principal(p_org uuid, p_name text, p_description text, p_by text default null)
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_org(p_org);
    perform ops.require_org_admin(p_org);
    if coalesce(p_name, '') !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
        perform ops.invalid('name', 'a service principal name: lower-case letters, digits, ., - and _ (e.g. nightly-etl)');
    end if;
    insert into ops.service_principals as s (org_id, name, description)
    values (p_org, p_name, coalesce(p_description, ''))
    on conflict (org_id, name) do update set description = excluded.description
    returning s.id into v_id;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (ops.ui_actor(p_by), 'service_principals', v_id, 'save',
            jsonb_build_object('org_id', p_org, 'name', p_name, 'description', coalesce(p_description, '')));
    return v_id;
end;
$$;

create function ops.delete_service_principal(p_org uuid, p_name text, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform ops.require_org(p_org);
    perform ops.require_org_admin(p_org);
    if exists (select 1 from ops.job_templates t where t.org_id = p_org and t.run_as = p_name) then
        perform ops.invalid('name', 'job templates run as this service principal: change their run_as first');
    end if;
    delete from ops.principal_group_members m
    where m.org_id = p_org and m.member_kind = 'service_principal' and m.member = p_name;
    delete from ops.service_principals s where s.org_id = p_org and s.name = p_name returning s.id into v_id;
    if v_id is null then
        raise exception using errcode = 'LH404', column = 'name',
            message = format('no service principal "%s" in this org', p_name);
    end if;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (ops.ui_actor(p_by), 'service_principals', v_id, 'delete', jsonb_build_object('org_id', p_org, 'name', p_name));
end;
$$;

-- Org admins edit every policy; a dataset's owner (or a holder of admin on it) edits its dataset policies.
create function ops.require_policy_editor(p_org uuid, p_target_kind text, p_target text) returns void
language plpgsql stable security definer
set search_path = ''
as $$
declare
    d ops.datasets;
    v_email text;
begin
    if not ops.caller_is_end_user() or coalesce(ops.org_role(p_org), '') = 'admin' then
        return;
    end if;
    v_email := ops.caller_email();
    if p_target_kind = 'dataset' and v_email is not null then
        select x.* into d from ops.datasets x join ops.projects p on p.id = x.project_id
        where x.id::text = p_target and p.org_id = p_org;
        if d.id is not null and coalesce((ops.access_decision(d, p_org, 'user', v_email,
                ops.principal_groups_of(p_org, 'user', v_email)) ->> 'admin')::boolean, false) then
            return;
        end if;
    end if;
    raise exception using errcode = 'LH403',
        message = 'permission denied: only org admins, and the owners of a dataset for its own policies, edit access policies';
end;
$$;

-- Create (p_policy null) or update a policy from JSON {"name", "kind", "target_kind", "target",
-- "principal_kind", "principal", "privilege", "row_filter", "mask_column", "mask_kind",
-- "mask_expression", "description"}.
create function ops.save_access_policy(p_org uuid, p_policy uuid, p_body jsonb, p_by text default null)
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    v_old ops.access_policies;
    v_new ops.access_policies;
    v_kind text := p_body ->> 'kind';
    v_target_kind text := p_body ->> 'target_kind';
    v_target text := nullif(btrim(coalesce(p_body ->> 'target', '')), '');
    v_principal_kind text := coalesce(p_body ->> 'principal_kind', 'everyone');
    v_principal text := case when coalesce(p_body ->> 'principal_kind', 'everyone') = 'everyone' then ''
                             else coalesce(p_body ->> 'principal', '') end;
begin
    perform ops.require_org(p_org);
    if p_body is null or jsonb_typeof(p_body) <> 'object' then
        perform ops.invalid('policy', 'a JSON object');
    end if;
    if p_policy is not null then
        select * into v_old from ops.access_policies x where x.id = p_policy and x.org_id = p_org for update;
        if v_old.id is null then
            raise exception using errcode = 'LH404', column = 'policy',
                message = format('access policy %s does not exist in this org', p_policy);
        end if;
        perform ops.require_policy_editor(p_org, v_old.target_kind, v_old.target);
    end if;
    if coalesce(p_body ->> 'name', '') !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' then
        perform ops.invalid('name', 'a policy name: letters, digits, ., - and _ (e.g. analysts-read-orders)');
    end if;
    if coalesce(v_kind, '') not in ('grant', 'deny', 'row_filter', 'column_mask') then
        perform ops.invalid('kind', 'one of grant, deny, row_filter, column_mask');
    end if;
    if coalesce(v_target_kind, '') not in ('dataset', 'schema', 'tag') then
        perform ops.invalid('target_kind', 'one of dataset, schema, tag');
    end if;
    if v_target is null then
        perform ops.invalid('target', 'a dataset id, a schema (name prefix such as warehouse.main) or a tag');
    end if;
    if v_target_kind = 'dataset' and not exists (
        select 1 from ops.datasets d join ops.projects p on p.id = d.project_id
        where d.id::text = v_target and p.org_id = p_org) then
        perform ops.invalid('target', 'no such dataset in this org (give its id)');
    end if;
    if v_principal_kind not in ('everyone', 'group', 'user', 'service_principal') then
        perform ops.invalid('principal_kind', 'one of everyone, group, user, service_principal');
    end if;
    if v_principal_kind = 'group' and not exists (
        select 1 from ops.principal_groups g where g.org_id = p_org and g.name = v_principal) then
        perform ops.invalid('principal', format('no group "%s" in this org: create it first', v_principal));
    end if;
    if v_principal_kind = 'service_principal' and not exists (
        select 1 from ops.service_principals s where s.org_id = p_org and s.name = v_principal) then
        perform ops.invalid('principal', format('no service principal "%s" in this org', v_principal));
    end if;
    if v_principal_kind = 'user' and v_principal !~ '^[^@[:space:]]+@[^@[:space:]]+$' then
        perform ops.invalid('principal', 'a user''s e-mail address');
    end if;
    if v_kind in ('grant', 'deny') and coalesce(p_body ->> 'privilege', '') not in ('read', 'write', 'admin') then
        perform ops.invalid('privilege', 'one of read, write, admin');
    end if;
    if v_kind = 'row_filter' and coalesce(btrim(p_body ->> 'row_filter'), '') = '' then
        perform ops.invalid('row_filter', 'a SQL predicate such as region = ''EU''');
    end if;
    if v_kind = 'column_mask' then
        if coalesce(p_body ->> 'mask_kind', '') not in ('null', 'hash', 'redact', 'partial', 'expression') then
            perform ops.invalid('mask_kind', 'one of null, hash, redact, partial, expression');
        end if;
        if nullif(p_body ->> 'mask_column', '') is null and v_target_kind <> 'tag' then
            perform ops.invalid('mask_column', 'name the column to mask');
        end if;
        if p_body ->> 'mask_kind' = 'expression' and coalesce(btrim(p_body ->> 'mask_expression'), '') = '' then
            perform ops.invalid('mask_expression', 'a SQL expression over the column, e.g. left(email, 2)');
        end if;
    end if;
    perform ops.require_policy_editor(p_org, v_target_kind, v_target);
    if exists (select 1 from ops.access_policies x where x.org_id = p_org and x.name = p_body ->> 'name'
               and x.id is distinct from p_policy) then
        perform ops.invalid('name', format('a policy named "%s" exists already', p_body ->> 'name'));
    end if;
    if v_old.id is null then
        insert into ops.access_policies (org_id, name, kind, target_kind, target, principal_kind, principal, privilege,
                                         row_filter, mask_column, mask_kind, mask_expression, description, created_by)
        values (p_org, p_body ->> 'name', v_kind, v_target_kind, v_target, v_principal_kind, v_principal,
                case when v_kind in ('grant', 'deny') then p_body ->> 'privilege' end,
                case when v_kind = 'row_filter' then p_body ->> 'row_filter' end,
                case when v_kind = 'column_mask' then nullif(p_body ->> 'mask_column', '') end,
                case when v_kind = 'column_mask' then p_body ->> 'mask_kind' end,
                case when v_kind = 'column_mask' and p_body ->> 'mask_kind' = 'expression'
                     then p_body ->> 'mask_expression' end,
                coalesce(p_body ->> 'description', ''), v_by)
        returning * into v_new;
    else
        update ops.access_policies x set name = p_body ->> 'name', kind = v_kind, target_kind = v_target_kind,
            target = v_target, principal_kind = v_principal_kind, principal = v_principal,
            privilege = case when v_kind in ('grant', 'deny') then p_body ->> 'privilege' end,
            row_filter = case when v_kind = 'row_filter' then p_body ->> 'row_filter' end,
            mask_column = case when v_kind = 'column_mask' then nullif(p_body ->> 'mask_column', '') end,
            mask_kind = case when v_kind = 'column_mask' then p_body ->> 'mask_kind' end,
            mask_expression = case when v_kind = 'column_mask' and p_body ->> 'mask_kind' = 'expression'
                                   then p_body ->> 'mask_expression' end,
            description = coalesce(p_body ->> 'description', ''), updated_at = now()
        where x.id = v_old.id returning * into v_new;
    end if;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (v_by, 'access_policies', v_new.id, case when v_old.id is null then 'create' else 'update' end,
            jsonb_strip_nulls(jsonb_build_object('org_id', p_org, 'name', v_new.name,
                'before', case when v_old.id is not null then to_jsonb(v_old) - 'created_at' - 'updated_at' end,
                'after', to_jsonb(v_new) - 'created_at' - 'updated_at')));
    return v_new.id;
end;
$$;

create function ops.delete_access_policy(p_org uuid, p_name text, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    v_old ops.access_policies;
begin
    perform ops.require_org(p_org);
    select * into v_old from ops.access_policies x where x.org_id = p_org and x.name = p_name for update;
    if v_old.id is null then
        raise exception using errcode = 'LH404', column = 'name', message = format('no access policy "%s" in this org', p_name);
    end if;
    perform ops.require_policy_editor(p_org, v_old.target_kind, v_old.target);
    delete from ops.access_policies x where x.id = v_old.id;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (ops.ui_actor(p_by), 'access_policies', v_old.id, 'delete',
            jsonb_build_object('org_id', p_org, 'name', p_name, 'before', to_jsonb(v_old) - 'created_at' - 'updated_at'));
end;
$$;

-- A job template's service principal (null: its runs act as their requester). Project admins.
create function ops.set_job_template_run_as(p_template uuid, p_run_as text, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
begin
    select * into t from ops.job_templates x where x.id = p_template for update;
    if t.id is null then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'admin');
    if p_run_as is not null and not exists (
        select 1 from ops.service_principals s where s.org_id = t.org_id and s.name = p_run_as) then
        perform ops.invalid('run_as', format('no service principal "%s" in this org', p_run_as));
    end if;
    update ops.job_templates x set run_as = p_run_as, updated_at = now() where x.id = t.id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (ops.ui_actor(p_by), 'job_templates', t.id, t.project_id, 'run_as',
            jsonb_build_object('before', t.run_as, 'after', p_run_as));
end;
$$;

-- The latest changes to an org's groups, service principals and policies (its members read them: the
-- audit log's own RLS shows project rows only).
create function ops.access_audit(p_org uuid, p_limit integer default 50)
returns table (id bigint, at timestamptz, actor text, entity text, action text, name text, detail jsonb)
language sql stable security definer
set search_path = ''
as $$
    select a.id, a.at, coalesce(u.email, a.actor), a.entity, a.action, a.detail ->> 'name', a.detail
    from ops.audit_log a left join ops.users u on u.id::text = a.actor
    where a.entity in ('access_policies', 'principal_groups', 'service_principals')
      and a.detail ->> 'org_id' = p_org::text and (not ops.caller_is_end_user() or ops.is_org_member(p_org))
    order by a.id desc limit least(greatest(p_limit, 1), 500)
$$;

revoke execute on function
    ops.principal_groups_of(uuid, text, text), ops.access_decision(ops.datasets, uuid, text, text, text[]),
    ops.access_decisions(uuid, text, text, uuid[]), ops.task_principal(uuid), ops.may_read_dataset(uuid),
    ops.caller_email(), ops.require_policy_editor(uuid, text, text), ops.access_decision_for(uuid, text, text, text[]),
    ops.access_audit(uuid, integer),
    ops.save_principal_group(uuid, text, text, jsonb, text), ops.delete_principal_group(uuid, text, text),
    ops.save_service_principal(uuid, text, text, text), ops.delete_service_principal(uuid, text, text),
    ops.save_access_policy(uuid, uuid, jsonb, text), ops.delete_access_policy(uuid, text, text),
    ops.set_job_template_run_as(uuid, text, text)
    from public;
grant execute on function
    ops.access_decisions(uuid, text, text, uuid[]), ops.may_read_dataset(uuid), ops.caller_email(),
    ops.access_decision_for(uuid, text, text, text[]), ops.access_audit(uuid, integer),
    ops.save_principal_group(uuid, text, text, jsonb, text), ops.delete_principal_group(uuid, text, text),
    ops.save_service_principal(uuid, text, text, text), ops.delete_service_principal(uuid, text, text),
    ops.save_access_policy(uuid, uuid, jsonb, text), ops.delete_access_policy(uuid, text, text),
    ops.set_job_template_run_as(uuid, text, text)
    to authenticated, service_role;
grant execute on function
    ops.principal_groups_of(uuid, text, text), ops.access_decision(ops.datasets, uuid, text, text, text[]),
    ops.task_principal(uuid), ops.require_policy_editor(uuid, text, text)
    to service_role;
