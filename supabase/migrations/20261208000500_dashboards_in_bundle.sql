-- Dashboards in the GitOps bundle (issue 24): a dashboard a bundle no longer names is archived, not deleted
-- (its versions are history, as job templates' are); saving it again (the bundle names it again) restores it.
--
-- ops.save_dashboard is redefined only to restore an archived dashboard it saves; ops.archive_dashboard is
-- the bundle deploy's (trusted callers; operators of the project when called as a user).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

alter table ops.dashboards add column archived_at timestamptz;

create or replace function ops.save_dashboard(
    p_project uuid,
    p_slug text,
    p_title text,
    p_template text,
    p_spec jsonb,
    p_source_yaml text,
    p_content_sha256 text,
    p_message text default '',
    p_expected_version integer default null,
    p_by text default null
) returns table (dashboard_id uuid, version integer, new_version boolean, created boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_org uuid;
    d ops.dashboards;
    v_latest ops.dashboard_versions;
    v_created boolean := false;
    v_new boolean := false;
    v_version integer;
    v_by text := ops.ui_actor(p_by);
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'operator');
    if p_slug is null or p_slug !~ '^[a-z0-9][a-z0-9-]{0,62}$' then
        perform ops.invalid('slug', 'must be lower-case letters, digits and dashes (at most 63), starting with a letter or digit');
    end if;
    select * into d from ops.dashboards x where x.project_id = p_project and x.slug = p_slug for update;
    if not found then
        insert into ops.dashboards (org_id, project_id, slug, title, template, created_by)
        values (v_org, p_project, p_slug, p_title, p_template, v_by)
        returning * into d;
        v_created := true;
    elsif d.archived_at is not null then
        -- Saved again (a bundle that names it again, or a clone to the same slug): it comes back, history kept.
        update ops.dashboards x set archived_at = null, updated_at = now() where x.id = d.id;
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'dashboards', d.id, p_project, 'restore', jsonb_build_object('slug', p_slug));
    end if;
    select * into v_latest from ops.dashboard_versions v where v.dashboard_id = d.id order by v.version desc limit 1;
    if p_expected_version is not null and coalesce(v_latest.version, 0) <> p_expected_version then
        raise exception using errcode = 'LH423', column = 'version',
            message = format('dashboard "%s" is at version %s now (you edited version %s); reload and edit again',
                             p_slug, coalesce(v_latest.version, 0), p_expected_version);
    end if;
    v_version := v_latest.version;
    if v_latest.version is null or v_latest.content_sha256 <> p_content_sha256 then
        v_version := coalesce(v_latest.version, 0) + 1;
        insert into ops.dashboard_versions (dashboard_id, version, org_id, project_id, spec, source_yaml,
                                            content_sha256, message, saved_by)
        values (d.id, v_version, v_org, p_project, p_spec, p_source_yaml, p_content_sha256,
                coalesce(p_message, ''), v_by);
        update ops.dashboards x set title = p_title, latest_version = v_version, updated_at = now()
        where x.id = d.id;
        v_new := true;
    end if;
    if v_new then
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'dashboards', d.id, p_project, case when v_created then 'create' else 'update' end,
                jsonb_strip_nulls(jsonb_build_object('slug', p_slug, 'version', v_version, 'template', p_template)));
    end if;
    return query select d.id, v_version, v_new, v_created;
end;
$$;

create function ops.archive_dashboard(p_project uuid, p_slug text, p_by text default null) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    d ops.dashboards;
    v_by text := ops.ui_actor(p_by);
begin
    perform ops.require_project_role(p_project, 'operator');
    select * into d from ops.dashboards x where x.project_id = p_project and x.slug = p_slug for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'slug',
            message = format('dashboard "%s" does not exist in project %s', p_slug, p_project);
    end if;
    if d.archived_at is null then
        update ops.dashboards x set archived_at = now(), updated_at = now() where x.id = d.id;
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'dashboards', d.id, p_project, 'archive',
                jsonb_build_object('slug', p_slug, 'version', d.latest_version));
    end if;
end;
$$;

revoke execute on function ops.archive_dashboard(uuid, text, text) from public;
grant execute on function ops.archive_dashboard(uuid, text, text) to authenticated, service_role;
