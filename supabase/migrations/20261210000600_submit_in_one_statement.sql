-- A submit in fewer round trips, sixth pass of issue 25 (dispatch latency). The submit resolved its project
-- reference in one statement, called ops.submit_run in a second and noted the engines' availability in a
-- third; each answer was awaited before the next was sent. ops.resolve_project lets the first and the third
-- travel inside the second: control_room.services.runs.submit_run now sends one statement,
--   select ... from ops.submit_run(ops.resolve_project(ref, id), ...) s  (+ note_engine_availability)
-- The look-up runs as the caller (security invoker), so row-level security decides what "does not exist"
-- means exactly as the Python look-up it replaces did, with the same errors and messages.

set local lock_timeout = '10s';
set local statement_timeout = '60s';

-- The project a reference names: by id when p_id (the reference as the caller parsed it into an id) is given,
-- else by slug, which must be unambiguous among the projects the caller sees. LH404 (field "project") when
-- none is visible, LH422 when the slug is in several orgs; both name the reference as it was given.
create function ops.resolve_project(p_ref text, p_id uuid) returns uuid
language plpgsql stable security invoker
set search_path = ''
as $$
declare
    v_ids uuid[];
begin
    if p_id is not null then
        v_ids := array(select p.id from ops.projects p where p.id = p_id);
    else
        v_ids := array(select p.id from ops.projects p where p.slug = p_ref limit 2);
    end if;
    if cardinality(v_ids) = 0 then
        raise exception using errcode = 'LH404', column = 'project',
            message = format('project "%s" does not exist or is not visible to you', p_ref);
    end if;
    if cardinality(v_ids) > 1 then
        perform ops.invalid('project', format('project slug "%s" exists in several orgs; pass the project id', p_ref));
    end if;
    return v_ids[1];
end;
$$;

revoke execute on function ops.resolve_project(text, uuid) from public;
grant execute on function ops.resolve_project(text, uuid) to authenticated, service_role;
