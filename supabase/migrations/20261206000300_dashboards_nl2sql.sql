-- Dashboards and NL→SQL (issue 24).
--
-- Dashboards: a project's saved dashboards (cloned from a shipped template, edited as YAML); every save
-- of a changed definition is a new immutable version. NL→SQL: every question asked, the SQL proposed
-- (or why it was refused), the SQL that ran and the person's feedback (correct / wrong + fixed SQL):
-- the project's evaluation set.
--
-- DESIGN decision 7: org_id on every row, RLS with read policies for the project's members,
-- `authenticated` gets SELECT only; writes go through the SECURITY DEFINER functions below, which check
-- the caller's project role (operators save dashboards and run questions, viewers ask and give feedback).

set local lock_timeout = '10s';
set local statement_timeout = '120s';

create table ops.dashboards (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    slug text not null check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    title text not null check (length(title) between 1 and 200),
    template text,
    latest_version integer not null default 1,
    created_by text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (project_id, slug)
);
create index dashboards_org on ops.dashboards (org_id);

create table ops.dashboard_versions (
    dashboard_id uuid not null references ops.dashboards(id) on delete cascade,
    version integer not null check (version >= 1),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    spec jsonb not null,
    source_yaml text not null,
    content_sha256 text not null,
    message text not null default '',
    saved_by text not null,
    saved_at timestamptz not null default now(),
    primary key (dashboard_id, version)
);
create index dashboard_versions_project on ops.dashboard_versions (project_id);

create table ops.nl2sql_questions (
    id uuid primary key default gen_random_uuid(),
    org_id uuid not null references ops.orgs(id) on delete cascade,
    project_id uuid not null references ops.projects(id) on delete cascade,
    user_id uuid,
    asked_by text not null,
    question text not null check (length(question) between 1 and 2000),
    provider text not null,
    outcome text not null check (outcome in ('translated', 'refused')),
    generated_sql text,
    message text not null default '',
    final_sql text,
    run_id uuid references ops.runs(id) on delete set null,
    feedback text check (feedback in ('correct', 'wrong')),
    fixed_sql text,
    created_at timestamptz not null default now(),
    feedback_at timestamptz
);
create index nl2sql_questions_project_created on ops.nl2sql_questions (project_id, created_at desc, id desc);
create index nl2sql_questions_org on ops.nl2sql_questions (org_id);

-- Version rows and questions are history: never rewritten except the question's run and feedback.
create function ops.forbid_dashboard_version_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception using errcode = 'LH409', message = 'dashboard versions are immutable; save a new version';
end;
$$;
create trigger dashboard_versions_immutable before update on ops.dashboard_versions
    for each row execute function ops.forbid_dashboard_version_change();

alter table ops.dashboards enable row level security;
alter table ops.dashboard_versions enable row level security;
alter table ops.nl2sql_questions enable row level security;

create policy dashboards_read on ops.dashboards for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy dashboard_versions_read on ops.dashboard_versions for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));
create policy nl2sql_questions_read on ops.nl2sql_questions for select to authenticated
    using (ops.has_project_role(project_id, 'viewer'));

grant select on ops.dashboards, ops.dashboard_versions, ops.nl2sql_questions to authenticated;

-- Create a dashboard (p_slug new in the project) or save a new version of it when its definition changed.
-- p_expected_version guards against saving over a version someone else saved meanwhile (null: no check).
create function ops.save_dashboard(
    p_project uuid,
    p_slug text,
    p_title text,
    p_template text,
    p_spec jsonb,
    p_source_yaml text,
    p_content_sha256 text,
    p_message text default '',
    p_expected_version integer default null,
    p_by text default null
) returns table (dashboard_id uuid, version integer, new_version boolean, created boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_org uuid;
    d ops.dashboards;
    v_latest ops.dashboard_versions;
    v_created boolean := false;
    v_new boolean := false;
    v_version integer;
    v_by text := ops.ui_actor(p_by);
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'operator');
    if p_slug is null or p_slug !~ '^[a-z0-9][a-z0-9-]{0,62}$' then
        perform ops.invalid('slug', 'must be lower-case letters, digits and dashes (at most 63), starting with a letter or digit');
    end if;
    select * into d from ops.dashboards x where x.project_id = p_project and x.slug = p_slug for update;
    if not found then
        insert into ops.dashboards (org_id, project_id, slug, title, template, created_by)
        values (v_org, p_project, p_slug, p_title, p_template, v_by)
        returning * into d;
        v_created := true;
    end if;
    select * into v_latest from ops.dashboard_versions v where v.dashboard_id = d.id order by v.version desc limit 1;
    if p_expected_version is not null and coalesce(v_latest.version, 0) <> p_expected_version then
        raise exception using errcode = 'LH423', column = 'version',
            message = format('dashboard "%s" is at version %s now (you edited version %s); reload and edit again',
                             p_slug, coalesce(v_latest.version, 0), p_expected_version);
    end if;
    v_version := v_latest.version;
    if v_latest.version is null or v_latest.content_sha256 <> p_content_sha256 then
        v_version := coalesce(v_latest.version, 0) + 1;
        insert into ops.dashboard_versions (dashboard_id, version, org_id, project_id, spec, source_yaml,
                                            content_sha256, message, saved_by)
        values (d.id, v_version, v_org, p_project, p_spec, p_source_yaml, p_content_sha256,
                coalesce(p_message, ''), v_by);
        update ops.dashboards x set title = p_title, latest_version = v_version, updated_at = now()
        where x.id = d.id;
        v_new := true;
    end if;
    if v_new then
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (v_by, 'dashboards', d.id, p_project, case when v_created then 'create' else 'update' end,
                jsonb_strip_nulls(jsonb_build_object('slug', p_slug, 'version', v_version, 'template', p_template)));
    end if;
    return query select d.id, v_version, v_new, v_created;
end;
$$;

-- Record a question and what the translator answered (SQL to review, or why it refused).
create function ops.record_nl2sql_question(
    p_project uuid,
    p_question text,
    p_provider text,
    p_outcome text,
    p_generated_sql text,
    p_message text,
    p_by text default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
    v_org uuid;
    v_id uuid;
begin
    select p.org_id into v_org from ops.projects p where p.id = p_project;
    if not found then
        raise exception using errcode = 'LH404', column = 'project', message = format('project %s does not exist', p_project);
    end if;
    perform ops.require_project_role(p_project, 'viewer');
    insert into ops.nl2sql_questions (org_id, project_id, user_id, asked_by, question, provider, outcome,
                                      generated_sql, message)
    values (v_org, p_project, auth.uid(), ops.ui_actor(p_by), p_question, p_provider, p_outcome, p_generated_sql,
            coalesce(p_message, ''))
    returning id into v_id;
    return v_id;
end;
$$;

-- A question locked for a change by someone with at least p_min on its project.
create function ops.nl2sql_question_for(p_question uuid, p_min text) returns ops.nl2sql_questions
language plpgsql security definer
set search_path = ''
as $$
declare
    q ops.nl2sql_questions;
begin
    select * into q from ops.nl2sql_questions x where x.id = p_question for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'question', message = format('question %s does not exist', p_question);
    end if;
    perform ops.require_project_role(q.project_id, p_min);
    return q;
end;
$$;

-- The reviewed SQL that ran for a question, and its run (operators run SQL tasks).
create function ops.set_nl2sql_run(p_question uuid, p_final_sql text, p_run uuid) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    q ops.nl2sql_questions := ops.nl2sql_question_for(p_question, 'operator');
begin
    update ops.nl2sql_questions x set final_sql = p_final_sql, run_id = p_run where x.id = q.id;
end;
$$;

-- Feedback on a question's SQL: correct, or wrong with the fixed SQL (the evaluation set's gold answer).
create function ops.nl2sql_feedback(p_question uuid, p_feedback text, p_fixed_sql text) returns void
language plpgsql security definer
set search_path = ''
as $$
declare
    q ops.nl2sql_questions := ops.nl2sql_question_for(p_question, 'viewer');
begin
    if p_feedback is null or p_feedback not in ('correct', 'wrong') then
        perform ops.invalid('feedback', 'must be "correct" or "wrong"');
    end if;
    update ops.nl2sql_questions x set feedback = p_feedback,
        fixed_sql = case when p_feedback = 'wrong' then nullif(p_fixed_sql, '') end, feedback_at = now()
    where x.id = q.id;
end;
$$;

revoke execute on function
    ops.forbid_dashboard_version_change(),
    ops.nl2sql_question_for(uuid, text),
    ops.save_dashboard(uuid, text, text, text, jsonb, text, text, text, integer, text),
    ops.record_nl2sql_question(uuid, text, text, text, text, text, text),
    ops.set_nl2sql_run(uuid, text, uuid),
    ops.nl2sql_feedback(uuid, text, text)
    from public;
grant execute on function
    ops.save_dashboard(uuid, text, text, text, jsonb, text, text, text, integer, text),
    ops.record_nl2sql_question(uuid, text, text, text, text, text, text),
    ops.set_nl2sql_run(uuid, text, uuid),
    ops.nl2sql_feedback(uuid, text, text)
    to authenticated, service_role;
