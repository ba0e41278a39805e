-- Serving endpoints in the GitOps bundle (issue 23 item 6).
--
-- A bundle names each endpoint's whole desired state (environment, traffic split, replicas, pool,
-- memory cap, running or stopped); ops.deploy_serving_endpoint makes the endpoint equal to it in one
-- call, creating it when it does not exist. A changed traffic split becomes a new revision (action
-- `update`), so the page's history and rollback see bundle changes like any other; a changed pool,
-- memory cap or environment restarts the replicas (their service tasks carry those), everything else
-- is reconciled in place. ops.delete_serving_endpoint removes an endpoint the bundle no longer lists:
-- its replicas are cancelled and its revisions, tokens and stats go with it. Both check the caller's
-- project role (operators) like the page's functions and write an audit entry.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create function ops.deploy_serving_endpoint(
    p_project uuid,
    p_environment text,
    p_name text,
    p_routes jsonb,
    p_replicas integer,
    p_pool text,
    p_max_memory_mb integer,
    p_status text,
    p_by text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    e ops.serving_endpoints;
    v_org uuid;
    v_env uuid;
    v_by text := ops.ui_actor(p_by);
    v_old jsonb;
    v_revision integer;
    v_restart boolean;
    v_retired uuid;
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'operator');
    if p_name is null or p_name !~ '^[a-z0-9][a-z0-9-]{0,62}$' then
        perform ops.invalid('name', 'must be lower-case letters, digits and dashes (at most 63), starting with a letter or digit');
    end if;
    if p_replicas is null or p_replicas not between 1 and 16 then
        perform ops.invalid('replicas', 'replicas per version must be 1 to 16');
    end if;
    if p_status is null or p_status not in ('running', 'stopped') then
        perform ops.invalid('status', 'must be running or stopped');
    end if;
    if p_max_memory_mb is not null and p_max_memory_mb < 64 then
        perform ops.invalid('max_memory_mb', 'a replica needs at least 64 MB');
    end if;
    perform ops.check_serving_routes(p_routes);
    select x.id into v_env from ops.environments x where x.project_id = p_project and x.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project', p_environment));
    end if;

    select * into e from ops.serving_endpoints x where x.project_id = p_project and x.name = p_name for update;
    if not found then
        insert into ops.serving_endpoints (org_id, project_id, environment_id, name, status, replicas, pool,
                                           max_memory_mb, created_by, stopped_at)
        values (v_org, p_project, v_env, p_name, p_status, p_replicas, p_pool, p_max_memory_mb, v_by,
                case when p_status = 'stopped' then now() end)
        returning * into e;
        insert into ops.serving_endpoint_revisions (endpoint_id, revision, org_id, project_id, routes, action,
                                                     created_by)
        values (e.id, 1, v_org, p_project, p_routes, 'create', v_by);
        perform ops.reconcile_serving_replicas(e.id);  -- checks the org's serving replica cap per replica
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'serving_endpoints', e.id, p_project, 'create',
                jsonb_strip_nulls(jsonb_build_object('name', p_name, 'routes', p_routes, 'replicas', p_replicas,
                                                     'pool', p_pool, 'max_memory_mb', p_max_memory_mb,
                                                     'status', p_status, 'source', 'bundle')));
        return e.id;
    end if;

    select r.routes into v_old from ops.serving_endpoint_revisions r
    where r.endpoint_id = e.id and r.revision = e.revision;
    v_revision := e.revision;
    if v_old is distinct from p_routes then
        v_revision := e.revision + 1;
        insert into ops.serving_endpoint_revisions (endpoint_id, revision, org_id, project_id, routes, action,
                                                     created_by)
        values (e.id, v_revision, e.org_id, e.project_id, p_routes, 'update', v_by);
    end if;
    -- A replica's task carries the pool, memory cap and environment it was started with.
    v_restart := e.environment_id <> v_env or e.pool is distinct from p_pool
                 or e.max_memory_mb is distinct from p_max_memory_mb;
    update ops.serving_endpoints x
    set environment_id = v_env, pool = p_pool, max_memory_mb = p_max_memory_mb, replicas = p_replicas,
        revision = v_revision, status = p_status,
        stopped_at = case when p_status = 'stopped' then coalesce(x.stopped_at, now()) end, updated_at = now()
    where x.id = e.id;
    if v_restart then
        for v_retired in
            update ops.serving_replicas r set retired_at = now()
            where r.endpoint_id = e.id and r.retired_at is null
            returning r.run_id
        loop
            perform ops.cancel_run(v_retired, format('serving endpoint %s: pool, memory cap or environment changed',
                                                     e.name));
        end loop;
    end if;
    perform ops.reconcile_serving_replicas(e.id);
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status, detail)
    values (v_by, 'serving_endpoints', e.id, e.project_id, 'update', e.revision::text, v_revision::text,
            jsonb_strip_nulls(jsonb_build_object('name', e.name, 'from', v_old, 'routes', p_routes,
                                                 'replicas', p_replicas, 'pool', p_pool,
                                                 'max_memory_mb', p_max_memory_mb, 'status', p_status,
                                                 'replicas_restarted', v_restart, 'source', 'bundle')));
    return e.id;
end;
$$;

create function ops.delete_serving_endpoint(p_endpoint uuid, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    e ops.serving_endpoints;
    v_by text := ops.ui_actor(p_by);
    v_routes jsonb;
    v_retired uuid;
begin
    select * into e from ops.serving_endpoints x where x.id = p_endpoint for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'endpoint', message = format('endpoint %s does not exist', p_endpoint);
    end if;
    perform ops.require_project_role(e.project_id, 'operator');
    select r.routes into v_routes from ops.serving_endpoint_revisions r
    where r.endpoint_id = e.id and r.revision = e.revision;
    for v_retired in
        update ops.serving_replicas r set retired_at = now()
        where r.endpoint_id = e.id and r.retired_at is null
        returning r.run_id
    loop
        perform ops.cancel_run(v_retired, format('serving endpoint %s deleted', e.name));
    end loop;
    delete from ops.serving_endpoints x where x.id = e.id;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'serving_endpoints', e.id, e.project_id, 'delete',
            jsonb_build_object('name', e.name, 'routes', v_routes, 'replicas', e.replicas));
end;
$$;

grant execute on function ops.deploy_serving_endpoint(uuid, text, text, jsonb, integer, text, integer, text, text)
    to authenticated, service_role;
grant execute on function ops.delete_serving_endpoint(uuid, text) to authenticated, service_role;
