-- MLflow in the control room (issue 23). MLflow keeps experiments, runs and the model registry in its
-- own database; the control plane only checks who may change a registered model's aliases and audits
-- each change. The model is identified in the audit log by a stable uuid derived from project + name.

create function ops.model_entity_id(p_project uuid, p_model text) returns uuid
language sql immutable
set search_path = ''
as $$ select md5('mlflow-model:' || p_project::text || ':' || p_model)::uuid $$;

-- Record an alias change of a registered model (set, move or delete). Operators manage aliases;
-- `champion` (what serving and consumers follow) needs an admin. Called in the transaction that
-- then asks MLflow: when MLflow refuses, the caller rolls the audit row back with it.
create function ops.record_model_alias_change(
    p_project uuid,
    p_model text,
    p_alias text,
    p_action text,
    p_version text,
    p_previous_version text,
    p_by text default null
) returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
    v_id bigint;
    v_actor text := coalesce(p_by, nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text,
                             session_user::text);
begin
    if p_action not in ('set', 'delete') then
        raise exception using errcode = 'LH422', column = 'action', message = 'action must be set or delete';
    end if;
    if coalesce(p_model, '') = '' or length(p_model) > 256 then
        raise exception using errcode = 'LH422', column = 'model', message = 'model name must be 1 to 256 characters';
    end if;
    if coalesce(p_alias, '') !~ '^[A-Za-z_][A-Za-z0-9_-]{0,63}$' then
        raise exception using errcode = 'LH422', column = 'alias',
            message = 'alias must start with a letter or _ and hold letters, digits, _ or - (at most 64)';
    end if;
    if not exists (select 1 from ops.projects p where p.id = p_project) then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, case when lower(p_alias) = 'champion' then 'admin' else 'operator' end);
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, old_status, new_status, detail)
    values (v_actor, 'registered_models', ops.model_entity_id(p_project, p_model), p_project,
            'alias_' || p_action, p_previous_version, p_version,
            jsonb_build_object('model', p_model, 'alias', p_alias))
    returning id into v_id;
    return v_id;
end;
$$;

revoke execute on function ops.record_model_alias_change(uuid, text, text, text, text, text, text) from public;
grant execute on function ops.record_model_alias_change(uuid, text, text, text, text, text, text)
    to authenticated, service_role;
grant execute on function ops.model_entity_id(uuid, text) to authenticated, service_role;
