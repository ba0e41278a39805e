-- OpenLineage ingest (issue 21): RunEvents, DatasetEvents and JobEvents POSTed by outside producers
-- (Airflow, Spark, dbt's own OpenLineage integrations pointed at /api/v1/lineage) join the project's
-- lineage. Their datasets and edges belong to no run of ours, so the run/task references of datasets,
-- edges and stored events become optional; their jobs are recorded in ops.lineage_jobs with the
-- datasets each one reads and writes. Writes go through ops.ingest_openlineage (security definer,
-- operator role on the project); readers of a project see its jobs as they see its datasets.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

alter table ops.datasets alter column first_run_id drop not null;
alter table ops.datasets alter column last_run_id drop not null;
alter table ops.datasets alter column last_task_id drop not null;
alter table ops.lineage_edges alter column first_run_id drop not null;
alter table ops.lineage_edges alter column last_run_id drop not null;
alter table ops.lineage_edges alter column last_task_id drop not null;
alter table ops.openlineage_events alter column run_id drop not null;
alter table ops.openlineage_events alter column task_id drop not null;
alter table ops.openlineage_events alter column attempt drop not null;
-- Who sent an ingested event (null: an engine's report under a task's lease).
alter table ops.openlineage_events add column ingested_by uuid references ops.users (id);
create index openlineage_events_project_time on ops.openlineage_events (project_id, event_time desc);

create table ops.lineage_jobs (
    id uuid primary key default gen_random_uuid(),
    project_id uuid not null references ops.projects (id),
    namespace text not null check (length(namespace) between 1 and 1000),
    name text not null check (length(name) between 1 and 1000),
    -- The job facets last sent (jobType, sql, documentation, ...).
    facets jsonb not null default '{}' check (jsonb_typeof(facets) = 'object'),
    -- The latest run state seen (by event time): its OpenLineage run id, event type and time.
    last_openlineage_run_id uuid,
    last_event_type text check (last_event_type in ('START', 'RUNNING', 'COMPLETE', 'ABORT', 'FAIL', 'OTHER')),
    last_event_time timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, namespace, name)
);

create table ops.lineage_job_datasets (
    job_id uuid not null references ops.lineage_jobs (id),
    dataset_id uuid not null references ops.datasets (id),
    direction text not null check (direction in ('input', 'output')),
    updated_at timestamptz not null default now(),
    primary key (job_id, dataset_id, direction)
);
create index lineage_job_datasets_dataset on ops.lineage_job_datasets (dataset_id);

alter table ops.lineage_jobs enable row level security;
alter table ops.lineage_job_datasets enable row level security;
grant select on ops.lineage_jobs, ops.lineage_job_datasets to authenticated;
grant all on ops.lineage_jobs, ops.lineage_job_datasets to service_role;
create policy lineage_jobs_read on ops.lineage_jobs for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy lineage_job_datasets_read on ops.lineage_job_datasets for select to authenticated
    using (exists (select 1 from ops.lineage_jobs j where j.id = job_id and ops.has_project_role(j.project_id, 'viewer')));

-- One OpenLineage event (already validated against the spec by the API) into the project's lineage.
-- Returns false when the RunEvent was stored before (same run.runId, eventType and eventTime): then
-- nothing else changes either. Datasets are kind 'table' unless an engine named them better; the
-- schema, documentation and ownership facets fill columns, description and owner; every input x
-- output pair of a RunEvent or JobEvent becomes an edge carrying the columnLineage facet's pairs.
create function ops.ingest_openlineage(p_project uuid, p_event jsonb) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
    v_type text := coalesce(p_event ->> 'eventType', 'OTHER');
    v_time timestamptz := (p_event ->> 'eventTime')::timestamptz;
    v_run uuid := (p_event -> 'run' ->> 'runId')::uuid;
    v_job uuid;
    v_inserted integer;
    v_side text;
    v_dataset jsonb;
    v_id uuid;
    v_inputs uuid[] := '{}';
    v_outputs uuid[] := '{}';
    v_output_facets jsonb[] := '{}';
    v_fields jsonb;
    i integer;
    j integer;
begin
    if not exists (select 1 from ops.projects p where p.id = p_project) then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'operator');
    if v_run is not null then
        insert into ops.openlineage_events (project_id, event_type, event_time, job_namespace, job_name,
                                            openlineage_run_id, event, ingested_by)
        values (p_project, v_type, v_time, p_event -> 'job' ->> 'namespace', p_event -> 'job' ->> 'name',
                v_run, p_event, auth.uid())
        on conflict (openlineage_run_id, event_type, event_time) do nothing;
        get diagnostics v_inserted = row_count;
        if v_inserted = 0 then
            return false;
        end if;
    end if;
    if p_event ? 'job' then
        insert into ops.lineage_jobs as j (project_id, namespace, name, facets, last_openlineage_run_id,
                                           last_event_type, last_event_time)
        values (p_project, p_event -> 'job' ->> 'namespace', p_event -> 'job' ->> 'name',
                coalesce(p_event -> 'job' -> 'facets', '{}'), v_run,
                case when v_run is null then null else v_type end, case when v_run is null then null else v_time end)
        on conflict (project_id, namespace, name) do update set
            facets = j.facets || excluded.facets,
            last_openlineage_run_id = case when excluded.last_event_time >= coalesce(j.last_event_time, '-infinity')
                                           then excluded.last_openlineage_run_id else j.last_openlineage_run_id end,
            last_event_type = case when excluded.last_event_time >= coalesce(j.last_event_time, '-infinity')
                                   then excluded.last_event_type else j.last_event_type end,
            last_event_time = greatest(j.last_event_time, excluded.last_event_time),
            updated_at = now()
        returning j.id into v_job;
    end if;
    for v_side, v_dataset in
        select 'input', d from jsonb_array_elements(coalesce(p_event -> 'inputs', '[]')) d
        union all
        select 'output', d from jsonb_array_elements(coalesce(p_event -> 'outputs', '[]')) d
        union all
        select 'dataset', p_event -> 'dataset' where p_event ? 'dataset'
    loop
        v_fields := v_dataset -> 'facets' -> 'schema' -> 'fields';
        insert into ops.datasets as d (project_id, namespace, name, kind, columns, owner, description, metadata)
        values (
            p_project, v_dataset ->> 'namespace', v_dataset ->> 'name', 'table',
            coalesce((select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                         'name', f ->> 'name', 'type', f ->> 'type', 'description', f ->> 'description')))
                      from jsonb_array_elements(case when jsonb_typeof(v_fields) = 'array' then v_fields else '[]' end) f),
                     '[]'),
            v_dataset -> 'facets' -> 'ownership' -> 'owners' -> 0 ->> 'name',
            coalesce(v_dataset -> 'facets' -> 'documentation' ->> 'description', ''),
            jsonb_build_object('source', 'openlineage')
        )
        on conflict (project_id, namespace, name) do update set
            columns = case when excluded.columns = '[]'::jsonb then d.columns else excluded.columns end,
            owner = coalesce(excluded.owner, d.owner),
            description = case when excluded.description = '' then d.description else excluded.description end,
            updated_at = now()
        returning d.id into v_id;
        if v_job is not null and v_side <> 'dataset' then
            insert into ops.lineage_job_datasets (job_id, dataset_id, direction) values (v_job, v_id, v_side)
            on conflict (job_id, dataset_id, direction) do update set updated_at = now();
        end if;
        if v_side = 'input' then
            v_inputs := v_inputs || v_id;
        elsif v_side = 'output' then
            v_outputs := v_outputs || v_id;
            v_output_facets := v_output_facets || coalesce(v_dataset -> 'facets', '{}');
        end if;
    end loop;
    for i in 1 .. coalesce(array_length(v_inputs, 1), 0) loop
        for j in 1 .. coalesce(array_length(v_outputs, 1), 0) loop
            continue when v_inputs[i] = v_outputs[j];
            insert into ops.lineage_edges as e (project_id, upstream_id, downstream_id, job_name, column_lineage)
            select p_project, v_inputs[i], v_outputs[j], p_event -> 'job' ->> 'name',
                   coalesce((
                       select jsonb_agg(jsonb_build_object('upstream_column', f ->> 'field', 'downstream_column', c.key))
                       from jsonb_each(coalesce(v_output_facets[j] -> 'columnLineage' -> 'fields', '{}')) c,
                            jsonb_array_elements(coalesce(c.value -> 'inputFields', '[]')) f,
                            ops.datasets u
                       where u.id = v_inputs[i] and f ->> 'namespace' = u.namespace and f ->> 'name' = u.name
                   ), '[]')
            on conflict (upstream_id, downstream_id) do update set
                job_name = case when excluded.job_name = '' then e.job_name else excluded.job_name end,
                column_lineage = case when excluded.column_lineage = '[]'::jsonb then e.column_lineage
                                      else excluded.column_lineage end,
                updated_at = now();
        end loop;
    end loop;
    return true;
end;
$$;

revoke all on function ops.ingest_openlineage(uuid, jsonb) from public;
grant execute on function ops.ingest_openlineage(uuid, jsonb) to authenticated, service_role;
