-- Demo data: one org and its projects with dev/staging/prod environments. Everything an admin
-- configures (routing matrix, caps, job templates, schedules, alert rules, promotion gates) comes
-- from the GitOps bundle examples/bundle/, which `lakehouse run` deploys right after this file
-- (`lakehouse bundle deploy examples/bundle` does it by hand, e.g. after `supabase db reset`).
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
