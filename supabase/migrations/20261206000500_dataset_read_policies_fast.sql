-- Dataset and lineage-edge visibility: the project check of 20261206000100 (the caller's projects computed
-- once per query) together with the access policies of 20261206000200, whose per-row check
-- (ops.may_read_dataset) now runs only when an org the caller sees governs its datasets with grants or
-- denies. Without this, every row of a 5,000-dataset graph paid a PL/pgSQL call with four queries.

set local lock_timeout = '10s';

create function ops.datasets_governed_for_caller() returns boolean
language sql stable security definer
set search_path = ''
as $$
    select ops.caller_is_end_user() and exists (
        select 1 from ops.access_policies x join ops.projects p on p.org_id = x.org_id
        where p.id = any (ops.viewable_projects()) and x.kind in ('grant', 'deny')
    )
$$;

revoke execute on function ops.datasets_governed_for_caller() from public;
grant execute on function ops.datasets_governed_for_caller() to authenticated, service_role;

drop policy datasets_read on ops.datasets;
create policy datasets_read on ops.datasets for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[])
           and (not (select ops.datasets_governed_for_caller()) or ops.may_read_dataset(id)));

drop policy lineage_edges_read on ops.lineage_edges;
create policy lineage_edges_read on ops.lineage_edges for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[])
           and (not (select ops.datasets_governed_for_caller())
                or (ops.may_read_dataset(upstream_id) and ops.may_read_dataset(downstream_id))));
