-- The datasets each task read and wrote, as its engine's lineage report said (issue 22, deliver 3: results of
-- dbt and Spark tasks carry their source datasets' policies). A lineage edge's upstream is an input of the
-- reporting task, its downstream an output. Edges and datasets keep only their last run; this keeps every
-- task's own inputs, so the rows endpoint and artifact previews check the policies of what *that* task read.
--
-- DESIGN decision 7: scoped through its project (RLS: the project's viewers), written only by the API's
-- lineage report under the task's lease (service role).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.task_datasets (
    task_id uuid not null references ops.tasks (id),
    project_id uuid not null references ops.projects (id),
    dataset_id uuid not null references ops.datasets (id),
    direction text not null check (direction in ('input', 'output')),
    recorded_at timestamptz not null default now(),
    primary key (task_id, direction, dataset_id)
);
create index task_datasets_dataset on ops.task_datasets (dataset_id);

alter table ops.task_datasets enable row level security;
grant select on ops.task_datasets to authenticated;
grant all on ops.task_datasets to service_role;
create policy task_datasets_read on ops.task_datasets for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));
