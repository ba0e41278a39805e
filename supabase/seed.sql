-- Demo data: one org, one project with dev/staging/prod, a routing matrix and caps.
-- Applied once by `lakehouse run` (and by `supabase db reset`); fixed ids keep it idempotent.

insert into ops.orgs (id, slug, name) values
    ('00000000-0000-4000-8000-000000000001', 'demo', 'Demo Data Co')
on conflict do nothing;

insert into ops.projects (id, org_id, slug, name, description) values
    ('00000000-0000-4000-8000-000000000101', '00000000-0000-4000-8000-000000000001', 'lakehouse',
     'Demo Lakehouse', 'Sample pipelines: ingest with shell and Python, transform with dbt and Spark, query with DuckDB.'),
    ('00000000-0000-4000-8000-000000000102', '00000000-0000-4000-8000-000000000001', 'ml',
     'ML Platform', 'Feature pipelines and model training.')
on conflict do nothing;

insert into ops.environments (id, project_id, name) values
    ('00000000-0000-4000-8000-000000000201', '00000000-0000-4000-8000-000000000101', 'dev'),
    ('00000000-0000-4000-8000-000000000202', '00000000-0000-4000-8000-000000000101', 'staging'),
    ('00000000-0000-4000-8000-000000000203', '00000000-0000-4000-8000-000000000101', 'prod'),
    ('00000000-0000-4000-8000-000000000211', '00000000-0000-4000-8000-000000000102', 'dev'),
    ('00000000-0000-4000-8000-000000000212', '00000000-0000-4000-8000-000000000102', 'staging'),
    ('00000000-0000-4000-8000-000000000213', '00000000-0000-4000-8000-000000000102', 'prod')
on conflict do nothing;

-- Routing matrix: first matching rule (by position) picks the pool and required labels; owners
-- and escalation chains are used by alerting. The demo has one local agent in pool "default".
insert into ops.routing_rules (id, org_id, name, position, match_environment, match_engine, pool,
                               required_labels, owner, escalation) values
    ('00000000-0000-4000-8000-000000000301', '00000000-0000-4000-8000-000000000001', 'prod-spark', 10,
     'prod', 'spark', 'default', '{}', 'data-platform@demo.example',
     '["oncall-data-platform@demo.example", "head-of-data@demo.example"]'),
    ('00000000-0000-4000-8000-000000000302', '00000000-0000-4000-8000-000000000001', 'dbt-models', 20,
     null, 'dbt', 'default', '{}', 'analytics-engineering@demo.example',
     '["oncall-analytics@demo.example"]'),
    ('00000000-0000-4000-8000-000000000303', '00000000-0000-4000-8000-000000000001', 'sql-warehouse', 30,
     null, 'duckdb', 'default', '{}', 'analytics-engineering@demo.example', '[]'),
    ('00000000-0000-4000-8000-000000000399', '00000000-0000-4000-8000-000000000001', 'catch-all', 1000,
     null, null, 'default', '{}', 'data-platform@demo.example', '["oncall-data-platform@demo.example"]')
on conflict do nothing;

insert into ops.caps (id, org_id, name, scope, project_id, environment_id, pool, engine, kind, limit_value) values
    ('00000000-0000-4000-8000-000000000401', '00000000-0000-4000-8000-000000000001', 'org-runs-per-day',
     'org', null, null, null, null, 'runs_per_day', 100000),
    ('00000000-0000-4000-8000-000000000402', '00000000-0000-4000-8000-000000000001', 'lakehouse-concurrency',
     'project', '00000000-0000-4000-8000-000000000101', null, null, null, 'concurrent_tasks', 16),
    ('00000000-0000-4000-8000-000000000403', '00000000-0000-4000-8000-000000000001', 'prod-max-runtime',
     'environment', null, '00000000-0000-4000-8000-000000000203', null, null, 'max_runtime_s', 3600),
    ('00000000-0000-4000-8000-000000000404', '00000000-0000-4000-8000-000000000001', 'spark-memory',
     'engine', null, null, null, 'spark', 'max_memory_mb', 4096),
    ('00000000-0000-4000-8000-000000000405', '00000000-0000-4000-8000-000000000001', 'sql-scan-limit',
     'engine', null, null, null, 'duckdb', 'scanned_bytes_per_query', 10737418240)
on conflict do nothing;
