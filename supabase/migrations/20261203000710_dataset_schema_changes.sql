-- Schema change history of datasets (issue 21): when a report (an engine's, or OpenLineage ingest)
-- changes a dataset's columns, the difference is recorded as one event: columns added, removed and
-- retyped, with the run that reported the new schema (null for ingested lineage). A report without
-- columns keeps the known ones (see the upserts), so it records nothing; the first schema a dataset
-- gets is its creation, not a change.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.dataset_schema_changes (
    id bigserial primary key,
    dataset_id uuid not null references ops.datasets (id),
    project_id uuid not null references ops.projects (id),
    run_id uuid references ops.runs (id),
    -- [{"column", "change": added|removed|retyped, "old_type", "new_type"}], in column order.
    changes jsonb not null check (jsonb_typeof(changes) = 'array' and jsonb_array_length(changes) > 0),
    detected_at timestamptz not null default now()
);
create index dataset_schema_changes_dataset on ops.dataset_schema_changes (dataset_id, id desc);

create trigger dataset_schema_changes_append_only before update or delete on ops.dataset_schema_changes
    for each row execute function ops.refuse_change();

alter table ops.dataset_schema_changes enable row level security;
grant select on ops.dataset_schema_changes to authenticated;
grant all on ops.dataset_schema_changes to service_role;
grant usage, select on sequence ops.dataset_schema_changes_id_seq to service_role;
create policy dataset_schema_changes_read on ops.dataset_schema_changes for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));

-- The difference between two column lists ([{"name", "type", ...}]); names compare case-insensitively.
create function ops.column_changes(p_old jsonb, p_new jsonb) returns jsonb
language sql immutable
set search_path = ''
as $$
    with old as (
        select lower(c ->> 'name') as key, c ->> 'name' as name, coalesce(c ->> 'type', '') as type, n
        from jsonb_array_elements(p_old) with ordinality as o (c, n)
    ), new as (
        select lower(c ->> 'name') as key, c ->> 'name' as name, coalesce(c ->> 'type', '') as type, n
        from jsonb_array_elements(p_new) with ordinality as o (c, n)
    )
    select coalesce(jsonb_agg(change order by ord), '[]') from (
        select jsonb_build_object('column', new.name, 'change', 'added', 'new_type', new.type) as change,
               new.n as ord
        from new left join old using (key) where old.key is null
        union all
        select jsonb_build_object('column', old.name, 'change', 'removed', 'old_type', old.type), 100000 + old.n
        from old left join new using (key) where new.key is null
        union all
        select jsonb_build_object('column', new.name, 'change', 'retyped', 'old_type', old.type,
                                  'new_type', new.type), new.n
        from new join old using (key)
        where upper(old.type) <> upper(new.type) and old.type <> '' and new.type <> ''
    ) changes
$$;

create function ops.record_schema_change() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
    v_changes jsonb;
begin
    if old.columns = '[]'::jsonb or new.columns = '[]'::jsonb or old.columns = new.columns then
        return new;
    end if;
    v_changes := ops.column_changes(old.columns, new.columns);
    if jsonb_array_length(v_changes) > 0 then
        insert into ops.dataset_schema_changes (dataset_id, project_id, run_id, changes)
        values (new.id, new.project_id,
                case when new.last_run_id is distinct from old.last_run_id then new.last_run_id end, v_changes);
    end if;
    return new;
end;
$$;

create trigger datasets_schema_change after update of columns on ops.datasets
    for each row execute function ops.record_schema_change();
