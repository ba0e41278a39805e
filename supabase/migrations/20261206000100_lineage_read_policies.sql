-- The lineage graph's read policies, fast at 5,000 datasets and 10,000 edges (issue 21's bench).
--
-- The read policies of the catalog and lineage tables called ops.has_project_role per row: reading a
-- project's whole graph as a viewer cost ~15,000 security-definer calls (seconds). They decide exactly
-- what they did, from the caller's project ids computed once per statement, as 20261126000810_ui_rls
-- did for runs and events: `(select ops.viewable_projects())` is an InitPlan and `project_id = any(...)`
-- can use the project indexes.

set local lock_timeout = '10s';

drop policy datasets_read on ops.datasets;
create policy datasets_read on ops.datasets for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy lineage_edges_read on ops.lineage_edges;
create policy lineage_edges_read on ops.lineage_edges for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy openlineage_events_read on ops.openlineage_events;
create policy openlineage_events_read on ops.openlineage_events for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy lineage_jobs_read on ops.lineage_jobs;
create policy lineage_jobs_read on ops.lineage_jobs for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

drop policy lineage_job_datasets_read on ops.lineage_job_datasets;
create policy lineage_job_datasets_read on ops.lineage_job_datasets for select to authenticated
    using (exists (select 1 from ops.lineage_jobs j
                   where j.id = job_id and j.project_id = any ((select ops.viewable_projects())::uuid[])));

drop policy dataset_schema_changes_read on ops.dataset_schema_changes;
create policy dataset_schema_changes_read on ops.dataset_schema_changes for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));
