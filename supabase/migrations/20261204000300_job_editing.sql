-- Job templates and schedules edited from the web UI (issue 17): admins save a template (a changed
-- definition becomes a new immutable version), archive and restore it, and create, edit, enable
-- or disable schedules. Every change is audited (source "ui") in the same transaction.
--
-- DESIGN decision 7: these are the only writes the UI makes to these tables; each function is
-- SECURITY DEFINER with an empty search_path and checks the caller's admin role on the project.
-- The GitOps bundle keeps writing through its own deploy (lakehouse bundle deploy); what the UI
-- saves is what `lakehouse bundle export` reads back.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create function ops.ui_actor(p_by text) returns text
language sql stable
set search_path = ''
as $$
    select coalesce(p_by, nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text)
$$;

-- Create or update a template and, when its definition (params schema, tasks, retries, timeout)
-- differs from the latest version's, add the next version. p_expected_version guards against
-- saving over a version someone else added meanwhile (null: creating, or no check).
create function ops.save_job_template(
    p_project uuid,
    p_name text,
    p_description text,
    p_owner text,
    p_tags text[],
    p_params_schema jsonb,
    p_tasks jsonb,
    p_max_attempts integer,
    p_retry_backoff_s integer,
    p_timeout_s integer,
    p_content_sha256 text,
    p_expected_version integer default null,
    p_by text default null
) returns table (template_id uuid, version integer, new_version boolean, created boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_org uuid;
    t ops.job_templates;
    v_latest ops.job_template_versions;
    v_created boolean := false;
    v_new boolean := false;
    v_version integer;
    v_by text := ops.ui_actor(p_by);
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'admin');
    select * into t from ops.job_templates x where x.project_id = p_project and x.name = p_name for update;
    if not found then
        insert into ops.job_templates (org_id, project_id, name, description, owner, tags)
        values (v_org, p_project, p_name, coalesce(p_description, ''), p_owner, coalesce(p_tags, '{}'))
        returning * into t;
        v_created := true;
    else
        if t.archived_at is not null then
            perform ops.invalid('name', format('job template "%s" is archived; restore it before editing it', p_name));
        end if;
        update ops.job_templates x set description = coalesce(p_description, ''), owner = p_owner,
            tags = coalesce(p_tags, '{}'), updated_at = now()
        where x.id = t.id;
    end if;
    select * into v_latest from ops.job_template_versions v where v.template_id = t.id order by v.version desc limit 1;
    if p_expected_version is not null and coalesce(v_latest.version, 0) <> p_expected_version then
        raise exception using errcode = 'LH423', column = 'version',
            message = format('job template "%s" is at version %s now (you edited version %s); reload and edit again',
                             p_name, coalesce(v_latest.version, 0), p_expected_version);
    end if;
    v_version := v_latest.version;
    if v_latest.id is null or v_latest.content_sha256 <> p_content_sha256 then
        v_version := coalesce(v_latest.version, 0) + 1;
        insert into ops.job_template_versions (template_id, version, params_schema, tasks, max_attempts,
                                               retry_backoff_s, timeout_s, content_sha256, created_by)
        values (t.id, v_version, p_params_schema, p_tasks, p_max_attempts, p_retry_backoff_s, p_timeout_s,
                p_content_sha256, v_by);
        v_new := true;
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'job_templates', t.id, p_project, case when v_created then 'create' else 'update' end,
            jsonb_strip_nulls(jsonb_build_object('source', 'ui', 'name', p_name,
                'version', case when v_new then v_version end)));
    return query select t.id, v_version, v_new, v_created;
end;
$$;

-- Archive a template (its schedules stop firing: they are disabled) or restore it.
create function ops.set_job_template_archived(p_template uuid, p_archived boolean, p_by text default null)
returns ops.job_templates
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_by text := ops.ui_actor(p_by);
begin
    select * into t from ops.job_templates x where x.id = p_template for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'admin');
    if (t.archived_at is not null) = p_archived then
        return t;
    end if;
    update ops.job_templates x set archived_at = case when p_archived then now() end, updated_at = now()
    where x.id = t.id returning * into t;
    if p_archived then
        update ops.schedules s set enabled = false, updated_at = now() where s.template_id = t.id and s.enabled;
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'job_templates', t.id, t.project_id, case when p_archived then 'archive' else 'restore' end,
            jsonb_build_object('source', 'ui', 'name', t.name));
    return t;
end;
$$;

-- Create (p_schedule null) or update a schedule of a template; the scheduler plans it again.
create function ops.save_schedule(
    p_schedule uuid,
    p_template uuid,
    p_name text,
    p_environment text,
    p_cron text,
    p_timezone text,
    p_params jsonb,
    p_enabled boolean,
    p_catchup text,
    p_catchup_limit integer,
    p_overlap text,
    p_jitter_s integer,
    p_misfire_grace_s integer,
    p_description text,
    p_by text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    t ops.job_templates;
    v_env uuid;
    v_id uuid;
    v_by text := ops.ui_actor(p_by);
    v_old jsonb;
begin
    select * into t from ops.job_templates x where x.id = p_template;
    if not found then
        raise exception using errcode = 'LH404', column = 'template', message = format('job template %s does not exist', p_template);
    end if;
    perform ops.require_project_role(t.project_id, 'admin');
    if t.archived_at is not null then
        perform ops.invalid('template', format('job template "%s" is archived; restore it first', t.name));
    end if;
    select e.id into v_env from ops.environments e where e.project_id = t.project_id and e.name = p_environment;
    if not found then
        perform ops.invalid('environment', format('"%s" is not an environment of this project (dev, staging or prod)', p_environment));
    end if;
    if p_schedule is null then
        if exists (select 1 from ops.schedules s where s.project_id = t.project_id and s.name = p_name) then
            perform ops.invalid('name', format('a schedule named "%s" exists in this project already', p_name));
        end if;
        insert into ops.schedules (org_id, project_id, name, template_id, environment_id, cron, timezone, params,
                                   enabled, catchup, catchup_limit, overlap, jitter_s, misfire_grace_s, description)
        values (t.org_id, t.project_id, p_name, t.id, v_env, p_cron, p_timezone, coalesce(p_params, '{}'), p_enabled,
                p_catchup, p_catchup_limit, p_overlap, p_jitter_s, p_misfire_grace_s, coalesce(p_description, ''))
        returning id into v_id;
    else
        select to_jsonb(s) - 'next_fire_at' - 'next_due_at' - 'updated_at' into v_old
        from ops.schedules s where s.id = p_schedule and s.template_id = t.id for update;
        if v_old is null then
            raise exception using errcode = 'LH404', column = 'schedule',
                message = format('schedule %s is not a schedule of job template "%s"', p_schedule, t.name);
        end if;
        update ops.schedules s set name = p_name, environment_id = v_env, cron = p_cron, timezone = p_timezone,
            params = coalesce(p_params, '{}'), enabled = p_enabled, catchup = p_catchup,
            catchup_limit = p_catchup_limit, overlap = p_overlap, jitter_s = p_jitter_s,
            misfire_grace_s = p_misfire_grace_s, description = coalesce(p_description, ''), updated_at = now()
        where s.id = p_schedule returning id into v_id;
    end if;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'schedules', v_id, t.project_id, case when p_schedule is null then 'create' else 'update' end,
            jsonb_strip_nulls(jsonb_build_object('source', 'ui', 'name', p_name, 'cron', p_cron,
                'timezone', p_timezone, 'enabled', p_enabled, 'previous', v_old)));
    return v_id;
end;
$$;

-- Enable or disable a schedule (admins; an operator's pause is ops.set_schedule_paused).
create function ops.set_schedule_enabled(p_schedule uuid, p_enabled boolean, p_by text default null)
returns ops.schedules
language plpgsql security definer
set search_path = ''
as $$
declare
    s ops.schedules;
    v_by text := ops.ui_actor(p_by);
begin
    select * into s from ops.schedules x where x.id = p_schedule for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'schedule', message = format('schedule %s does not exist', p_schedule);
    end if;
    perform ops.require_project_role(s.project_id, 'admin');
    if s.enabled = p_enabled then
        return s;
    end if;
    update ops.schedules x set enabled = p_enabled, updated_at = now() where x.id = p_schedule returning * into s;
    insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
    values (v_by, 'schedules', s.id, s.project_id, case when p_enabled then 'enable' else 'disable' end,
            jsonb_build_object('source', 'ui', 'name', s.name));
    return s;
end;
$$;

revoke execute on function
    ops.ui_actor(text),
    ops.save_job_template(uuid, text, text, text, text[], jsonb, jsonb, integer, integer, integer, text, integer, text),
    ops.set_job_template_archived(uuid, boolean, text),
    ops.save_schedule(uuid, uuid, text, text, text, text, jsonb, boolean, text, integer, text, integer, integer, text,
                      text),
    ops.set_schedule_enabled(uuid, boolean, text)
    from public;
grant execute on function
    ops.ui_actor(text),
    ops.save_job_template(uuid, text, text, text, text[], jsonb, jsonb, integer, integer, integer, text, integer, text),
    ops.set_job_template_archived(uuid, boolean, text),
    ops.save_schedule(uuid, uuid, text, text, text, text, jsonb, boolean, text, integer, text, integer, integer, text,
                      text),
    ops.set_schedule_enabled(uuid, boolean, text)
    to anon, authenticated, service_role;

-- "Fire now" as a signed-in operator (the page and POST /schedules/{id}/fire act as the user) resolves
-- the version to run with ops.resolve_template_version, which 20261203000300_jobs.sql granted to
-- service_role only: users got "permission denied for function resolve_template_version". It returns
-- only the id of a version of a template the caller names by id; the fire itself checks the role.
grant execute on function ops.resolve_template_version(uuid, uuid, integer) to authenticated;
