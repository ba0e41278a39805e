-- OpenMetadata connector (issue 21): what people curate in OpenMetadata (owners, tags, glossary terms,
-- descriptions of the table and its columns) pulled back onto our datasets. It lands under the
-- dataset's metadata key 'openmetadata' and fills the owner and description the engines left empty;
-- the engines' own facts are never overwritten. Admin role on the project; audited per dataset; a
-- row equal to what is stored changes nothing (a second sync is a no-op). updated_at stays: it is
-- the dataset's last data write (freshness), which a catalog sync is not.

set local lock_timeout = '10s';

-- p_rows: [{"dataset_id", "openmetadata": {...}, "owner", "description"}]; returns the datasets changed.
create function ops.apply_openmetadata_pull(p_project uuid, p_rows jsonb, p_by text default null)
returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_by text := ops.ui_actor(p_by);
    v_changed integer := 0;
    r record;
begin
    perform ops.require_project_role(p_project, 'admin');
    if jsonb_typeof(p_rows) is distinct from 'array' then
        raise exception using errcode = 'LH422', column = 'rows', message = 'rows must be a JSON array';
    end if;
    for r in
        select d.id, x.openmetadata, x.owner, coalesce(x.description, '') as description
        from jsonb_to_recordset(p_rows) as x (dataset_id uuid, openmetadata jsonb, owner text, description text)
        join ops.datasets d on d.id = x.dataset_id and d.project_id = p_project
        where jsonb_typeof(x.openmetadata) = 'object'
          and (d.metadata -> 'openmetadata' is distinct from x.openmetadata
               or (d.owner is null and x.owner is not null)
               or (d.description = '' and coalesce(x.description, '') <> ''))
        for update of d
    loop
        update ops.datasets d
        set metadata = d.metadata || jsonb_build_object('openmetadata', r.openmetadata),
            owner = coalesce(d.owner, r.owner),
            description = case when d.description = '' then r.description else d.description end
        where d.id = r.id;
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'datasets', r.id, p_project, 'openmetadata_pull',
                jsonb_build_object('fqn', r.openmetadata ->> 'fqn'));
        v_changed := v_changed + 1;
    end loop;
    return v_changed;
end;
$$;

revoke all on function ops.apply_openmetadata_pull(uuid, jsonb, text) from public;
grant execute on function ops.apply_openmetadata_pull(uuid, jsonb, text) to authenticated, service_role;
