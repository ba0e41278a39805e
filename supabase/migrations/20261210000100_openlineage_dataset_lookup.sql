-- OpenLineage ingest (issue 21): an event's datasets are looked up one by one in the project's unique
-- (project_id, namespace, name) index. ops.ingest_openlineage (20261209000200) joined the datasets the
-- event names to the project's datasets; the planner, which expects ~200 rows from jsonb_array_elements
-- where an event names two or three, chose a merge join reading every dataset of the project through the
-- index on project_id, so each event cost Postgres CPU in proportion to the project's size (600 datasets:
-- 0.08 ms; the 5,000-dataset project of the graph bench: ~0.6 ms; serial ingest went from 0.8 to 2.1 ms of
-- backend CPU per event over 3,000 events). Same arguments, result and rows; only the look-up changes.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create or replace function ops.ingest_openlineage(p_project uuid, p_event jsonb) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
    v_type text := coalesce(p_event ->> 'eventType', 'OTHER');
    v_time timestamptz := (p_event ->> 'eventTime')::timestamptz;
    v_run uuid := (p_event -> 'run' ->> 'runId')::uuid;
    v_job uuid;
    v_inserted integer;
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
        -- The job's facets merge; its last state follows the latest event time. An event older than the
        -- state known, with facets known already, changes nothing and is not written.
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
        where excluded.last_event_time >= coalesce(j.last_event_time, '-infinity')
           or j.facets || excluded.facets <> j.facets
           or j.updated_at < now() - interval '1 minute'
        returning j.id into v_job;
        if v_job is null then
            select j.id into v_job from ops.lineage_jobs j
            where j.project_id = p_project and j.namespace = p_event -> 'job' ->> 'namespace'
              and j.name = p_event -> 'job' ->> 'name';
        end if;
    end if;
    if not (p_event ? 'inputs' or p_event ? 'outputs' or p_event ? 'dataset') then
        return true;
    end if;
    with sent as (
        -- Every mention of a dataset, in the order the loop of the previous version visited them.
        select x.ord, x.side, x.d ->> 'namespace' as namespace, x.d ->> 'name' as name,
               coalesce(x.d -> 'facets', '{}') as facets,
               coalesce((select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                            'name', f ->> 'name', 'type', f ->> 'type', 'description', f ->> 'description')))
                         from jsonb_array_elements(case when jsonb_typeof(x.d -> 'facets' -> 'schema' -> 'fields') = 'array'
                                                        then x.d -> 'facets' -> 'schema' -> 'fields' else '[]' end) f),
                        '[]') as columns,
               x.d -> 'facets' -> 'ownership' -> 'owners' -> 0 ->> 'name' as owner,
               coalesce(x.d -> 'facets' -> 'documentation' ->> 'description', '') as description
        from (
            select 'input' as side, a.d, a.n as ord
            from jsonb_array_elements(coalesce(p_event -> 'inputs', '[]')) with ordinality as a (d, n)
            union all
            select 'output', a.d, 1000000 + a.n
            from jsonb_array_elements(coalesce(p_event -> 'outputs', '[]')) with ordinality as a (d, n)
            union all
            select 'dataset', p_event -> 'dataset', 2000000 where p_event ? 'dataset'
        ) x
    ), merged as (
        -- One row per dataset with what its last mention saying each fact said (as upserting each
        -- mention in turn left it).
        select s.namespace, s.name,
               coalesce((array_agg(s.columns order by s.ord desc) filter (where s.columns <> '[]'))[1], '[]') as columns,
               (array_agg(s.owner order by s.ord desc) filter (where s.owner is not null))[1] as owner,
               coalesce((array_agg(s.description order by s.ord desc) filter (where s.description <> ''))[1], '')
                   as description
        from sent s group by s.namespace, s.name
    ), known as (
        -- One unique-index look-up per dataset named (the limit keeps the subquery a parametrised scan).
        select d.id, d.namespace, d.name, d.columns, d.owner, d.description, d.updated_at
        from merged m cross join lateral (
            select x.id, x.namespace, x.name, x.columns, x.owner, x.description, x.updated_at
            from ops.datasets x
            where x.project_id = p_project and x.namespace = m.namespace and x.name = m.name
            limit 1
        ) d
    ), written as (
        insert into ops.datasets as d (project_id, namespace, name, kind, columns, owner, description, metadata)
        select p_project, m.namespace, m.name, 'table', m.columns, m.owner, m.description,
               jsonb_build_object('source', 'openlineage')
        from merged m left join known k on k.namespace = m.namespace and k.name = m.name
        where k.id is null
           or (m.columns <> '[]' and m.columns <> k.columns)
           or (m.owner is not null and m.owner is distinct from k.owner)
           or (m.description <> '' and m.description <> k.description)
           or k.updated_at < now() - interval '1 minute'
        on conflict (project_id, namespace, name) do update set
            columns = case when excluded.columns = '[]'::jsonb then d.columns else excluded.columns end,
            owner = coalesce(excluded.owner, d.owner),
            description = case when excluded.description = '' then d.description else excluded.description end,
            updated_at = now()
        returning d.id, d.namespace, d.name
    ), mentions as (
        select s.ord, s.side, s.namespace, s.name, s.facets, coalesce(w.id, k.id) as id
        from sent s
        left join written w on w.namespace = s.namespace and w.name = s.name
        left join known k on k.namespace = s.namespace and k.name = s.name
    ), links as (
        select distinct m.id, m.side from mentions m where v_job is not null and m.side <> 'dataset'
    ), linked as (
        insert into ops.lineage_job_datasets as jd (job_id, dataset_id, direction)
        select v_job, l.id, l.side from links l
        where not exists (select 1 from ops.lineage_job_datasets x
                          where x.job_id = v_job and x.dataset_id = l.id and x.direction = l.side
                            and x.updated_at >= now() - interval '1 minute')
        on conflict (job_id, dataset_id, direction) do update set updated_at = now()
        returning 1
    ), pairs as (
        -- Every input x output pair: an edge carrying the pairs of the output's columnLineage facet that
        -- name this input; a pair sent twice keeps the last non-empty column lineage.
        select i.id as upstream_id, o.id as downstream_id,
               coalesce((array_agg(o.column_lineage order by i.ord desc, o.ord desc)
                         filter (where o.column_lineage <> '[]'))[1], '[]') as column_lineage
        from mentions i
        cross join lateral (
            select m.id, m.ord,
                   coalesce((
                       select jsonb_agg(jsonb_build_object('upstream_column', f ->> 'field', 'downstream_column', c.key))
                       from jsonb_each(coalesce(m.facets -> 'columnLineage' -> 'fields', '{}')) c,
                            jsonb_array_elements(coalesce(c.value -> 'inputFields', '[]')) f
                       where f ->> 'namespace' = i.namespace and f ->> 'name' = i.name
                   ), '[]') as column_lineage
            from mentions m where m.side = 'output' and m.id <> i.id
        ) o
        where i.side = 'input'
        group by i.id, o.id
    ), edges as (
        insert into ops.lineage_edges as e (project_id, upstream_id, downstream_id, job_name, column_lineage)
        select p_project, p.upstream_id, p.downstream_id, p_event -> 'job' ->> 'name', p.column_lineage
        from pairs p
        left join ops.lineage_edges k on k.upstream_id = p.upstream_id and k.downstream_id = p.downstream_id
        where k.id is null
           or (coalesce(p_event -> 'job' ->> 'name', '') <> '' and p_event -> 'job' ->> 'name' <> k.job_name)
           or (p.column_lineage <> '[]' and p.column_lineage <> k.column_lineage)
           or k.updated_at < now() - interval '1 minute'
        on conflict (upstream_id, downstream_id) do update set
            job_name = case when excluded.job_name = '' then e.job_name else excluded.job_name end,
            column_lineage = case when excluded.column_lineage = '[]'::jsonb then e.column_lineage
                                  else excluded.column_lineage end,
            updated_at = now()
        returning 1
    )
    -- (Every data-modifying part runs to completion whether or not it is read.)
    select (select count(*) from linked) + (select count(*) from edges) into v_inserted;
    return true;
end;
$$;
