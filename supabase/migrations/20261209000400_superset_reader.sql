-- Superset's read-only role (issue 24): Superset reads the control plane's dashboard relations through it, never the
-- DuckDB warehouse (DuckDB allows one writer process). It may SELECT the relations dashboards may read
-- (control_room/services/dashboards.py CONTROL_PLANE_RELATIONS, no identities or secrets) and nothing else; every
-- transaction is read-only. It bypasses RLS because it is no signed-in user: the rows a person sees in Superset are
-- scoped by the datasets the control room pushes (bound to one project) and by the row-level-security clauses of the
-- guest token the control room mints for that person (control_room/services/superset.py). It cannot log in until
-- `lakehouse superset up` (make superset) gives it a password.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'lakehouse_superset_reader') then
        create role lakehouse_superset_reader nologin noinherit bypassrls;
    end if;
exception when duplicate_object then null;  -- another database of the cluster created it first
end $$;

alter role lakehouse_superset_reader set default_transaction_read_only = on;
alter role lakehouse_superset_reader set statement_timeout = '30s';

grant usage on schema ops to lakehouse_superset_reader;
grant select on
    ops.projects, ops.environments, ops.runs, ops.tasks, ops.task_attempts, ops.events, ops.caps, ops.cap_usage,
    ops.job_templates, ops.job_template_versions, ops.schedules, ops.schedule_fires, ops.backfills, ops.datasets,
    ops.lineage_edges, ops.dataset_schema_changes, ops.query_history, ops.alert_incidents, ops.alert_rules,
    ops.promotion_requests, ops.deployments, ops.dashboards, ops.nl2sql_questions
to lakehouse_superset_reader;
