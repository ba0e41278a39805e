-- Artifact locations are for admins (issue 14): members see an opaque id (`artifact:<uuid>`) instead of
-- the store location (`file:///srv/.../.lakehouse/...`, `s3://bucket/key`), which names servers, folders
-- and buckets. The uri column is no longer granted to members; ops.artifact_location() decides.

revoke select on ops.artifacts from authenticated;
grant select (id, run_id, project_id, task_id, attempt, name, size_bytes, sha256, content_type, metadata, created_at)
    on ops.artifacts to authenticated;

-- The store location for project admins and trusted callers (API for executors, CLI, loops); an opaque
-- id for everyone else; null when the artifact is not visible to the caller.
create function ops.artifact_location(p_artifact uuid) returns text
language sql stable security definer
set search_path = ''
as $$
    select case
        when not ops.caller_is_end_user() or ops.has_project_role(a.project_id, 'admin') then a.uri
        when ops.has_project_role(a.project_id, 'viewer') then 'artifact:' || a.id::text
        end
    from ops.artifacts a where a.id = p_artifact
$$;

revoke execute on function ops.artifact_location(uuid) from public;
grant execute on function ops.artifact_location(uuid) to authenticated, service_role;
