-- Governance edited from the pages, the API and the CLI (issue 19): the routing matrix is applied as a
-- whole (one transaction, every rule's change audited with before/after), caps are saved and deleted
-- one by one (audited), and each bundle deploy records what it deployed so the pages can show the
-- drift between the live configuration and the last deployed bundle. An org can lock these edits to
-- its bundle only.
--
-- DESIGN decision 7: `authenticated` loses its direct INSERT/UPDATE/DELETE on ops.routing_rules and
-- ops.caps (and their *_admin policies): people write them only through the SECURITY DEFINER
-- functions below, which check the caller's role and scope. The bundle deploy (a trusted caller)
-- keeps writing rows directly.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

drop policy routing_rules_admin on ops.routing_rules;
drop policy caps_admin on ops.caps;
revoke insert, update, delete on ops.routing_rules, ops.caps from authenticated;

-- Per-org governance settings: bundle_only refuses edits from the pages, API and CLI, naming where
-- the bundle lives (a repository URL or path), so changes go through review instead.
create table ops.governance_settings (
    org_id uuid primary key references ops.orgs (id),
    bundle_only boolean not null default false,
    bundle_location text not null default '' check (length(bundle_location) <= 500),
    updated_at timestamptz not null default now()
);

-- What `lakehouse bundle deploy` last made live, per org (a new row only when the content changed).
create table ops.bundle_deployments (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs (id),
    content jsonb not null check (jsonb_typeof(content) = 'object'),
    content_sha256 text not null check (content_sha256 ~ '^[0-9a-f]{64}$'),
    deployed_by text not null,
    deployed_at timestamptz not null default now()
);
create index bundle_deployments_org on ops.bundle_deployments (org_id, deployed_at desc);

-- Who may read an org's governance: its org members and the members of any of its projects (viewers,
-- operators and admins alike; ops.org_role counts project viewers only).
create function ops.is_org_member(p_org uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
    select exists (select 1 from ops.org_members om where om.org_id = p_org and om.user_id = auth.uid())
        or exists (select 1 from ops.project_members pm join ops.projects p on p.id = pm.project_id
                   where p.org_id = p_org and pm.user_id = auth.uid())
$$;

alter table ops.governance_settings enable row level security;
alter table ops.bundle_deployments enable row level security;
grant select on ops.governance_settings, ops.bundle_deployments to authenticated;
grant all on ops.governance_settings, ops.bundle_deployments to service_role;
create policy governance_settings_read on ops.governance_settings for select to authenticated
    using (ops.is_org_member(org_id));
create policy bundle_deployments_read on ops.bundle_deployments for select to authenticated
    using (ops.is_org_member(org_id));
drop policy routing_rules_read on ops.routing_rules;
create policy routing_rules_read on ops.routing_rules for select to authenticated using (ops.is_org_member(org_id));
drop policy caps_read on ops.caps;
create policy caps_read on ops.caps for select to authenticated using (ops.is_org_member(org_id));

-- Refuses an end user who is not an admin of the org (trusted callers pass).
create function ops.require_org_admin(p_org uuid) returns void
language plpgsql stable security definer
set search_path = ''
as $$
begin
    if ops.caller_is_end_user() and coalesce(ops.org_role(p_org), '') <> 'admin' then
        raise exception using errcode = 'LH403',
            message = format('permission denied: only admins of org %s edit routing and caps', p_org);
    end if;
end;
$$;

-- Refuses edits of an org whose governance is locked to its bundle.
create function ops.require_governance_unlocked(p_org uuid) returns void
language plpgsql stable security definer
set search_path = ''
as $$
declare
    g ops.governance_settings;
begin
    select * into g from ops.governance_settings s where s.org_id = p_org;
    if found and g.bundle_only then
        raise exception using errcode = 'LH423', column = 'org',
            message = format('routing and caps of this org are managed by its bundle only (%s): change them there '
                             'and run `lakehouse bundle deploy`',
                             coalesce(nullif(g.bundle_location, ''), 'ask an admin where it lives'));
    end if;
end;
$$;

-- A fingerprint of an org's routing matrix: an apply names the one it was drafted from, so nobody
-- silently overwrites a change made meanwhile.
create function ops.routing_fingerprint(p_org uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select md5(coalesce(string_agg((to_jsonb(r) - 'created_at' - 'updated_at')::text, '|' order by r.position), ''))
    from ops.routing_rules r
    where r.org_id = p_org and (not ops.caller_is_end_user() or ops.is_org_member(p_org))
$$;

create function ops.routing_rule_json(r ops.routing_rules) returns jsonb
language sql immutable
set search_path = ''
as $$
    select to_jsonb(r) - 'created_at' - 'updated_at' - 'org_id'
$$;

-- Make the org's routing matrix equal to p_rules (a JSON array in priority order; an element with
-- the "id" of a live rule updates it, one without creates a rule, live rules left out are deleted).
-- Each element carries its "position": strictly increasing in array order (the page keeps the live
-- positions where the order allows, so a bundle's numbering survives a reorder). Returns {"created", "updated", "deleted", "fingerprint"}.
create function ops.apply_routing_rules(p_org uuid, p_rules jsonb, p_fingerprint text, p_by text default null)
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    v_slug text;
    v_item jsonb;
    v_index integer;
    v_id uuid;
    v_old ops.routing_rules;
    v_new ops.routing_rules;
    v_ids uuid[] := '{}';
    v_created integer := 0;
    v_updated integer := 0;
    v_deleted integer := 0;
    v_project uuid;
    v_position integer;
    v_previous bigint := -2147483649;
    v_before jsonb;
begin
    select o.slug into v_slug from ops.orgs o where o.id = p_org;
    if not found then
        raise exception using errcode = 'LH404', column = 'org', message = format('org %s does not exist', p_org);
    end if;
    perform ops.require_org_admin(p_org);
    perform ops.require_governance_unlocked(p_org);
    if p_rules is null or jsonb_typeof(p_rules) <> 'array' then
        perform ops.invalid('rules', 'must be a JSON array of rules in priority order');
    end if;
    -- The same lock as `lakehouse bundle deploy` (control_room/services/bundles.py DEPLOY_LOCK_CLASS).
    perform pg_advisory_xact_lock(72451190, hashtext(v_slug));
    if p_fingerprint is not null and p_fingerprint <> ops.routing_fingerprint(p_org) then
        raise exception using errcode = 'LH423', column = 'fingerprint',
            message = 'the routing matrix changed since you loaded it; reload it and apply your edits again';
    end if;
    for v_item, v_index in select e, i::integer from jsonb_array_elements(p_rules) with ordinality x(e, i) loop
        if nullif(v_item ->> 'id', '') is not null then
            v_ids := v_ids || (v_item ->> 'id')::uuid;
        end if;
    end loop;
    for v_old in select * from ops.routing_rules r where r.org_id = p_org and not (r.id = any(v_ids)) order by r.position
    loop
        delete from ops.routing_rules r where r.id = v_old.id;
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'routing_rules', v_old.id, v_old.match_project_id, 'delete',
                jsonb_build_object('source', 'ui', 'org_id', p_org, 'name', v_old.name,
                                   'before', ops.routing_rule_json(v_old)));
        v_deleted := v_deleted + 1;
    end loop;
    select coalesce(jsonb_object_agg(r.id::text, ops.routing_rule_json(r)), '{}') into v_before
    from ops.routing_rules r where r.org_id = p_org;
    -- Park the kept rules on free positions so a reordering never trips unique (org, position).
    update ops.routing_rules r set position = -2000000000 + x.n
    from (select q.id, row_number() over (order by q.position)::integer as n
          from ops.routing_rules q where q.org_id = p_org) x
    where r.id = x.id;
    for v_item, v_index in select e, i::integer from jsonb_array_elements(p_rules) with ordinality x(e, i) loop
        if coalesce(v_item ->> 'name', '') !~ '^\S.{0,199}$' then
            perform ops.invalid(format('rules[%s].name', v_index - 1), 'give each rule a name (1 to 200 characters)');
        end if;
        if jsonb_typeof(v_item -> 'position') is distinct from 'number' or (v_item ->> 'position')::numeric <= v_previous
           or (v_item ->> 'position')::numeric > 2147483647 or (v_item ->> 'position')::numeric % 1 <> 0 then
            perform ops.invalid(format('rules[%s].position', v_index - 1),
                                'a whole number greater than the previous rule''s position');
        end if;
        v_position := (v_item ->> 'position')::integer;
        v_previous := v_position;
        if coalesce(v_item ->> 'pool', '') !~ '^[a-z0-9][a-z0-9_-]{0,62}$' then
            perform ops.invalid(format('rules[%s].pool', v_index - 1),
                                'a pool name: lower-case letters, digits, - and _ (e.g. default)');
        end if;
        v_project := nullif(v_item ->> 'match_project_id', '')::uuid;
        if v_project is not null and not exists (
            select 1 from ops.projects p where p.id = v_project and p.org_id = p_org) then
            perform ops.invalid(format('rules[%s].match_project_id', v_index - 1), 'not a project of this org');
        end if;
        v_id := nullif(v_item ->> 'id', '')::uuid;
        v_old := null;
        if v_id is not null then
            select * into v_old from ops.routing_rules r where r.id = v_id and r.org_id = p_org for update;
            if not found then
                perform ops.invalid(format('rules[%s].id', v_index - 1),
                                    'no such rule in this org (deleted meanwhile?); reload the matrix');
            end if;
        end if;
        if v_old.id is null then
            insert into ops.routing_rules (org_id, name, position, match_project_id, match_environment, match_engine,
                                           match_labels, match_tags, pool, required_labels, allow_pool_override, owner,
                                           escalation, enabled)
            values (p_org, v_item ->> 'name', v_position, v_project, nullif(v_item ->> 'match_environment', ''),
                    nullif(v_item ->> 'match_engine', ''), ops.json_text_array(v_item -> 'match_labels'),
                    ops.json_text_array(v_item -> 'match_tags'), v_item ->> 'pool',
                    ops.json_text_array(v_item -> 'required_labels'),
                    coalesce((v_item ->> 'allow_pool_override')::boolean, false), nullif(v_item ->> 'owner', ''),
                    coalesce(v_item -> 'escalation', '[]'), coalesce((v_item ->> 'enabled')::boolean, true))
            returning * into v_new;
            insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
            values (v_by, 'routing_rules', v_new.id, v_new.match_project_id, 'create',
                    jsonb_build_object('source', 'ui', 'org_id', p_org, 'name', v_new.name,
                                       'after', ops.routing_rule_json(v_new)));
            v_created := v_created + 1;
        else
            update ops.routing_rules r set name = v_item ->> 'name', position = v_position, match_project_id = v_project,
                match_environment = nullif(v_item ->> 'match_environment', ''),
                match_engine = nullif(v_item ->> 'match_engine', ''),
                match_labels = ops.json_text_array(v_item -> 'match_labels'),
                match_tags = ops.json_text_array(v_item -> 'match_tags'), pool = v_item ->> 'pool',
                required_labels = ops.json_text_array(v_item -> 'required_labels'),
                allow_pool_override = coalesce((v_item ->> 'allow_pool_override')::boolean, false),
                owner = nullif(v_item ->> 'owner', ''), escalation = coalesce(v_item -> 'escalation', '[]'),
                enabled = coalesce((v_item ->> 'enabled')::boolean, true)
            where r.id = v_old.id returning * into v_new;
            if ops.routing_rule_json(v_new) is distinct from v_before -> v_old.id::text then
                update ops.routing_rules r set updated_at = now() where r.id = v_new.id;
                insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
                values (v_by, 'routing_rules', v_new.id, v_new.match_project_id, 'update',
                        jsonb_build_object('source', 'ui', 'org_id', p_org, 'name', v_new.name,
                                           'before', v_before -> v_old.id::text,
                                           'after', ops.routing_rule_json(v_new)));
                v_updated := v_updated + 1;
            end if;
        end if;
    end loop;
    return jsonb_build_object('created', v_created, 'updated', v_updated, 'deleted', v_deleted,
                              'fingerprint', ops.routing_fingerprint(p_org));
end;
$$;

-- Create (p_cap null) or update one cap. Org admins edit every cap; a project's admins also edit the
-- caps scoped to their project or one of its environments.
create function ops.save_cap(
    p_org uuid,
    p_cap uuid,
    p_name text,
    p_scope text,
    p_project uuid,
    p_environment uuid,
    p_pool text,
    p_engine text,
    p_kind text,
    p_limit bigint,
    p_enabled boolean,
    p_by text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    v_old ops.caps;
    v_new ops.caps;
    v_project uuid := case when p_scope = 'project' then p_project end;
    v_environment uuid := case when p_scope = 'environment' then p_environment end;
    v_scope_project uuid;
begin
    if not exists (select 1 from ops.orgs o where o.id = p_org) then
        raise exception using errcode = 'LH404', column = 'org', message = format('org %s does not exist', p_org);
    end if;
    if p_cap is not null then
        select * into v_old from ops.caps c where c.id = p_cap and c.org_id = p_org for update;
        if not found then
            raise exception using errcode = 'LH404', column = 'cap', message = format('cap %s does not exist', p_cap);
        end if;
    end if;
    if coalesce(p_name, '') !~ '^\S.{0,199}$' then
        perform ops.invalid('name', 'give the cap a name (1 to 200 characters, e.g. prod-concurrency)');
    end if;
    if p_scope is null or p_scope not in ('org', 'project', 'environment', 'pool', 'engine') then
        perform ops.invalid('scope', 'one of org, project, environment, pool, engine');
    end if;
    if p_kind is null or p_kind not in ('concurrent_tasks', 'max_runtime_s', 'runs_per_day',
            'compute_seconds_per_day', 'scanned_bytes_per_query', 'max_memory_mb', 'max_cores', 'max_output_bytes') then
        perform ops.invalid('kind', 'not a kind of cap (concurrent_tasks, max_runtime_s, runs_per_day, ...)');
    end if;
    if p_limit is null or p_limit < 0 then
        perform ops.invalid('limit', 'a whole number, 0 or more');
    end if;
    if p_scope = 'project' and not exists (select 1 from ops.projects p where p.id = p_project and p.org_id = p_org) then
        perform ops.invalid('project', 'pick a project of this org');
    end if;
    if p_scope = 'environment' then
        select e.project_id into v_scope_project from ops.environments e join ops.projects p on p.id = e.project_id
        where e.id = p_environment and p.org_id = p_org;
        if v_scope_project is null then
            perform ops.invalid('environment', 'pick an environment of a project of this org');
        end if;
    end if;
    if p_scope = 'pool' and coalesce(p_pool, '') !~ '^[a-z0-9][a-z0-9_-]{0,62}$' then
        perform ops.invalid('pool', 'name the pool this cap limits');
    end if;
    if p_scope = 'engine' and coalesce(p_engine, '') = '' then
        perform ops.invalid('engine', 'name the engine this cap limits');
    end if;
    v_scope_project := coalesce(v_project, v_scope_project);
    -- Project admins may edit caps of their own project's scope (before and after the change).
    if v_scope_project is null or (v_old.id is not null and v_old.scope not in ('project', 'environment')) then
        perform ops.require_org_admin(p_org);
    elsif ops.caller_is_end_user() and coalesce(ops.org_role(p_org), '') <> 'admin' then
        perform ops.require_project_role(v_scope_project, 'admin');
        if v_old.id is not null then
            perform ops.require_project_role(
                coalesce(v_old.project_id, (select e.project_id from ops.environments e where e.id = v_old.environment_id)),
                'admin');
        end if;
    end if;
    perform ops.require_governance_unlocked(p_org);
    if exists (select 1 from ops.caps c where c.org_id = p_org and c.name = p_name and c.id is distinct from p_cap) then
        perform ops.invalid('name', format('a cap named "%s" exists already', p_name));
    end if;
    if v_old.id is null then
        insert into ops.caps (org_id, name, scope, project_id, environment_id, pool, engine, kind, limit_value, enabled)
        values (p_org, p_name, p_scope, v_project, v_environment, case when p_scope = 'pool' then p_pool end,
                case when p_scope = 'engine' then p_engine end, p_kind, p_limit, coalesce(p_enabled, true))
        returning * into v_new;
    else
        update ops.caps c set name = p_name, scope = p_scope, project_id = v_project, environment_id = v_environment,
            pool = case when p_scope = 'pool' then p_pool end, engine = case when p_scope = 'engine' then p_engine end,
            kind = p_kind, limit_value = p_limit, enabled = coalesce(p_enabled, true), updated_at = now()
        where c.id = v_old.id returning * into v_new;
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'caps', v_new.id, v_scope_project, case when v_old.id is null then 'create' else 'update' end,
            jsonb_strip_nulls(jsonb_build_object('source', 'ui', 'org_id', p_org, 'name', v_new.name,
                'before', case when v_old.id is not null then to_jsonb(v_old) - 'created_at' - 'updated_at' end,
                'after', to_jsonb(v_new) - 'created_at' - 'updated_at')));
    return v_new.id;
end;
$$;

create function ops.delete_cap(p_cap uuid, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    v_old ops.caps;
    v_project uuid;
begin
    select * into v_old from ops.caps c where c.id = p_cap for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'cap', message = format('cap %s does not exist', p_cap);
    end if;
    v_project := coalesce(v_old.project_id, (select e.project_id from ops.environments e where e.id = v_old.environment_id));
    if v_project is null or (ops.caller_is_end_user() and coalesce(ops.org_role(v_old.org_id), '') = 'admin') then
        perform ops.require_org_admin(v_old.org_id);
    else
        perform ops.require_project_role(v_project, 'admin');
    end if;
    perform ops.require_governance_unlocked(v_old.org_id);
    delete from ops.caps c where c.id = p_cap;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'caps', v_old.id, v_project, 'delete',
            jsonb_build_object('source', 'ui', 'org_id', v_old.org_id, 'name', v_old.name,
                               'before', to_jsonb(v_old) - 'created_at' - 'updated_at'));
end;
$$;

-- Lock an org's governance to its bundle (or unlock it); org admins or trusted callers, audited.
create function ops.set_governance_lock(p_org uuid, p_bundle_only boolean, p_location text, p_by text default null)
returns ops.governance_settings
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    g ops.governance_settings;
begin
    if not exists (select 1 from ops.orgs o where o.id = p_org) then
        raise exception using errcode = 'LH404', column = 'org', message = format('org %s does not exist', p_org);
    end if;
    perform ops.require_org_admin(p_org);
    insert into ops.governance_settings as s (org_id, bundle_only, bundle_location)
    values (p_org, p_bundle_only, coalesce(p_location, ''))
    on conflict (org_id) do update set bundle_only = excluded.bundle_only,
        bundle_location = excluded.bundle_location, updated_at = now()
    returning * into g;
    insert into ops.audit_log (actor, entity, entity_id, action, detail)
    values (v_by, 'governance_settings', p_org, case when p_bundle_only then 'lock' else 'unlock' end,
            jsonb_build_object('source', 'ui', 'org_id', p_org, 'bundle_location', g.bundle_location));
    return g;
end;
$$;

revoke execute on function
    ops.require_org_admin(uuid), ops.require_governance_unlocked(uuid), ops.routing_fingerprint(uuid),
    ops.routing_rule_json(ops.routing_rules), ops.apply_routing_rules(uuid, jsonb, text, text),
    ops.save_cap(uuid, uuid, text, text, uuid, uuid, text, text, text, bigint, boolean, text),
    ops.delete_cap(uuid, text), ops.set_governance_lock(uuid, boolean, text, text)
    from public;
grant execute on function
    ops.require_org_admin(uuid), ops.require_governance_unlocked(uuid), ops.routing_fingerprint(uuid),
    ops.routing_rule_json(ops.routing_rules), ops.apply_routing_rules(uuid, jsonb, text, text),
    ops.save_cap(uuid, uuid, text, text, uuid, uuid, text, text, text, bigint, boolean, text),
    ops.delete_cap(uuid, text), ops.set_governance_lock(uuid, boolean, text, text)
    to authenticated, service_role;

-- Each cap of an org with its live usage: tasks holding a slot now and queued behind it (for
-- concurrent_tasks), today's counters and refusals (ops.cap_usage). Members of the org only.
create function ops.cap_usage_now(p_org uuid)
returns table (
    cap_id uuid, running bigint, queued bigint, runs_today integer, compute_seconds_today double precision,
    max_runtime_s_today double precision, scanned_bytes_today bigint, breaches_today integer, breaches_7d bigint,
    last_breach_day date
)
language sql stable security definer
set search_path = ''
as $$
    select c.id,
           (select count(*) from ops.tasks t
            where t.org_id = c.org_id and t.status in ('claimed', 'running') and ops.cap_applies(c, t)),
           (select count(*) from ops.tasks t
            where t.org_id = c.org_id and t.status = 'queued' and ops.cap_applies(c, t)),
           coalesce(u.runs, 0), coalesce(u.compute_seconds, 0), coalesce(u.max_runtime_s, 0),
           coalesce(u.scanned_bytes, 0), coalesce(u.breaches, 0),
           (select coalesce(sum(w.breaches), 0) from ops.cap_usage w
            where w.cap_id = c.id and w.day > ops.utc_today() - 7),
           (select max(w.day) from ops.cap_usage w where w.cap_id = c.id and w.breaches > 0)
    from ops.caps c
    left join ops.cap_usage u on u.cap_id = c.id and u.day = ops.utc_today()
    where c.org_id = p_org and (not ops.caller_is_end_user() or ops.is_org_member(p_org))
$$;

revoke execute on function ops.cap_usage_now(uuid) from public;
grant execute on function ops.cap_usage_now(uuid) to authenticated, service_role;

-- The org's slug, and who may own a routing rule (members' addresses and alert channel names), for
-- members of the org (null / nothing for anybody else).
create function ops.governance_org_slug(p_org uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select o.slug from ops.orgs o where o.id = p_org and (not ops.caller_is_end_user() or ops.is_org_member(p_org))
$$;

create function ops.governance_people(p_org uuid) returns setof text
language sql stable security definer
set search_path = ''
as $$
    select lower(u.email) from ops.users u
    where (not ops.caller_is_end_user() or ops.is_org_member(p_org)) and u.id in (
        select om.user_id from ops.org_members om where om.org_id = p_org
        union select pm.user_id from ops.project_members pm join ops.projects p on p.id = pm.project_id
        where p.org_id = p_org)
    union
    select c.name from ops.alert_channels c
    where c.org_id = p_org and (not ops.caller_is_end_user() or ops.is_org_member(p_org))
$$;

-- The org named by slug or id (null: the caller's only org) among those whose governance the caller reads.
create function ops.governance_org_id(p_org text) returns uuid
language sql stable security definer
set search_path = ''
as $$
    select case when count(*) = 1 then min(o.id::text)::uuid end
    from ops.orgs o
    where (p_org is null or o.slug = lower(p_org) or o.id::text = p_org)
      and (not ops.caller_is_end_user() or ops.is_org_member(o.id))
$$;

revoke execute on function ops.is_org_member(uuid), ops.governance_org_slug(uuid), ops.governance_people(uuid),
    ops.governance_org_id(text) from public;
grant execute on function ops.is_org_member(uuid), ops.governance_org_slug(uuid), ops.governance_people(uuid),
    ops.governance_org_id(text) to authenticated, service_role;
