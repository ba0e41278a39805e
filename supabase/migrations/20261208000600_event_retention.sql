-- Event and history retention (issue 25, deliver 5): the events and attempts of runs that finished more
-- than a project's retention period ago (ops.projects.event_retention_days, default 30, 0 keeps them) are
-- written to Parquet in the artifact store (size and SHA-256 recorded and verified, like every artifact),
-- then deleted from ops.events / ops.task_attempts in small batches, each its own short transaction.
-- The run page reads them back from the Parquet as "archived events".
--
-- Archive and delete, not time partitions: events are keyed and read by run (events_run (run_id, id)),
-- and a time partition can only be dropped when every run with an event in it is past retention, which
-- one long-running or late-appending run prevents; the retention is also per project, which a partition
-- of the whole table cannot follow. See README "Event retention".
--
-- Exactly once across replicas (DESIGN decision 8): ops.event_archives has one row per run (its primary
-- key); a replica claims runs by inserting that row (ON CONFLICT DO NOTHING) or by taking over a row whose
-- lease expired (FOR UPDATE SKIP LOCKED), and every later step is fenced by the claim token. Deletes are
-- allowed only for events of a run whose archive is recorded, and only up to the last archived event id:
-- the append-only trigger of ops.events now lets those through and nothing else.

set local lock_timeout = '10s';
set local statement_timeout = '120s';

alter table ops.projects add column event_retention_days integer not null default 30
    check (event_retention_days between 0 and 3650);
comment on column ops.projects.event_retention_days is
    'Days after a run finished before its events and attempts move to the Parquet archive; 0 keeps them.';

-- Candidates: finished runs, oldest first.
create index runs_finished on ops.runs (finished_at) where finished_at is not null;

create table ops.event_archives (
    run_id uuid primary key references ops.runs (id),
    org_id uuid not null references ops.orgs (id),
    project_id uuid not null references ops.projects (id),
    -- writing: Parquet being written (nothing deleted yet); deleting: Parquet verified and recorded, rows
    -- being removed in batches; done: every archived row removed.
    status text not null default 'writing' check (status in ('writing', 'deleting', 'done')),
    claim_token uuid,
    claimed_by text,
    lease_expires_at timestamptz,
    retention_days integer not null,
    last_event_id bigint,
    event_count integer not null default 0 check (event_count >= 0),
    attempt_count integer not null default 0 check (attempt_count >= 0),
    events_key text,
    events_size_bytes bigint check (events_size_bytes is null or events_size_bytes >= 0),
    events_sha256 text check (events_sha256 is null or events_sha256 ~ '^[0-9a-f]{64}$'),
    attempts_key text,
    attempts_size_bytes bigint check (attempts_size_bytes is null or attempts_size_bytes >= 0),
    attempts_sha256 text check (attempts_sha256 is null or attempts_sha256 ~ '^[0-9a-f]{64}$'),
    created_at timestamptz not null default now(),
    archived_at timestamptz,
    deleted_at timestamptz,
    check (status = 'writing' or (events_sha256 is not null and attempts_sha256 is not null
                                  and last_event_id is not null and archived_at is not null))
);
create index event_archives_unfinished on ops.event_archives (lease_expires_at) where status <> 'done';
create index event_archives_project on ops.event_archives (project_id, created_at desc);

alter table ops.event_archives enable row level security;
grant select on ops.event_archives to authenticated;
grant all on ops.event_archives to service_role;
-- Whoever may read the run's events may read where they went (the policy of ops.events).
create policy event_archives_read on ops.event_archives for select to authenticated
    using (project_id = any ((select ops.viewable_projects())::uuid[]));

-- An access refusal keeps its record when the event it came from is archived.
alter table ops.access_refusals alter column event_id drop not null;
alter table ops.access_refusals drop constraint access_refusals_event_id_fkey;
alter table ops.access_refusals add constraint access_refusals_event_id_fkey
    foreign key (event_id) references ops.events (id) on delete set null;

-- Events stay append-only: updates are refused as before; a delete is refused unless every deleted row
-- belongs to a run whose archive is recorded and is not newer than the last archived event.
drop trigger events_append_only on ops.events;
create trigger events_append_only before update on ops.events
    for each row execute function ops.refuse_change();

create function ops.refuse_unarchived_event_delete() returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_id bigint;
begin
    select o.id into v_id
    from old_rows o
    where not exists (select 1 from ops.event_archives a
                      where a.run_id = o.run_id and a.status in ('deleting', 'done') and o.id <= a.last_event_id)
    limit 1;
    if v_id is not null then
        raise exception using
            errcode = 'LH423',
            message = format('ops.events is append-only: delete is not allowed (event %s is not archived)', v_id),
            hint = 'history is immutable; only the retention loop removes events, after archiving them';
    end if;
    return null;
end;
$$;

create trigger events_delete_archived_only after delete on ops.events
    referencing old table as old_rows
    for each statement execute function ops.refuse_unarchived_event_delete();

create function ops.refuse_unarchived_attempt_delete() returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_task uuid;
begin
    select o.task_id into v_task
    from old_rows o
    where not exists (select 1 from ops.event_archives a where a.run_id = o.run_id and a.status in ('deleting', 'done'))
    limit 1;
    if v_task is not null then
        raise exception using
            errcode = 'LH423',
            message = format('ops.task_attempts: delete is not allowed (the attempts of task %s are not archived)',
                             v_task),
            hint = 'only the retention loop removes attempts, after archiving them';
    end if;
    return null;
end;
$$;

create trigger task_attempts_delete_archived_only after delete on ops.task_attempts
    referencing old table as old_rows
    for each statement execute function ops.refuse_unarchived_attempt_delete();

-- Claim up to p_limit runs to archive at p_now: first archives whose lease expired (a replica died midway),
-- then runs past their project's retention that have no archive yet. Each comes back with a fresh claim
-- token that every later call must present.
create function ops.claim_event_archives(p_now timestamptz, p_worker text, p_limit integer, p_lease_seconds integer)
returns setof ops.event_archives
language plpgsql security definer
set search_path = ''
as $$
declare
    v_taken integer := 0;
    v_lease timestamptz := p_now + make_interval(secs => p_lease_seconds);
    v_oldest_cutoff timestamptz;
    v_row ops.event_archives;
begin
    for v_row in
        with stale as (
            select a.run_id from ops.event_archives a
            where a.status <> 'done' and (a.lease_expires_at is null or a.lease_expires_at < p_now)
            order by a.created_at
            limit p_limit
            for update skip locked
        )
        update ops.event_archives a
        set claim_token = gen_random_uuid(), claimed_by = p_worker, lease_expires_at = v_lease
        from stale s where a.run_id = s.run_id
        returning a.*
    loop
        v_taken := v_taken + 1;
        return next v_row;
    end loop;
    if v_taken >= p_limit then
        return;
    end if;
    -- The latest cutoff of any project that archives bounds the index scan of finished runs.
    select p_now - make_interval(days => min(p.event_retention_days)) into v_oldest_cutoff
    from ops.projects p where p.event_retention_days > 0;
    if v_oldest_cutoff is null then
        return;
    end if;
    return query
        insert into ops.event_archives (run_id, org_id, project_id, retention_days, claim_token, claimed_by,
                                        lease_expires_at)
        select r.id, r.org_id, r.project_id, p.event_retention_days, gen_random_uuid(), p_worker, v_lease
        from ops.runs r
        join ops.projects p on p.id = r.project_id
        where r.finished_at is not null and r.finished_at < v_oldest_cutoff
          and r.status in ('succeeded', 'failed', 'cancelled')
          and p.event_retention_days > 0
          and r.finished_at < p_now - make_interval(days => p.event_retention_days)
          and not exists (select 1 from ops.event_archives a where a.run_id = r.id)
        order by r.finished_at
        limit p_limit - v_taken
        on conflict (run_id) do nothing
        returning *;
end;
$$;

-- The Parquet files of a claimed run are stored and verified: record them (fenced by the claim token) and
-- move the archive to 'deleting'. False when the claim was lost to another replica.
create function ops.record_event_archive(
    p_run uuid, p_token uuid, p_last_event_id bigint, p_event_count integer, p_attempt_count integer,
    p_events_key text, p_events_size bigint, p_events_sha256 text,
    p_attempts_key text, p_attempts_size bigint, p_attempts_sha256 text, p_now timestamptz
) returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
    update ops.event_archives
    set status = 'deleting', last_event_id = p_last_event_id, event_count = p_event_count,
        attempt_count = p_attempt_count, events_key = p_events_key, events_size_bytes = p_events_size,
        events_sha256 = p_events_sha256, attempts_key = p_attempts_key, attempts_size_bytes = p_attempts_size,
        attempts_sha256 = p_attempts_sha256, archived_at = p_now
    where run_id = p_run and claim_token = p_token and status = 'writing';
    return found;
end;
$$;

-- Remove up to p_batch archived rows of a run (events first, then attempts) and extend the lease; when the
-- last ones went, mark the archive done. lost: the claim belongs to another replica now (nothing deleted).
-- One call is one short transaction: row locks on the deleted rows only, never a table lock, so appends to
-- other runs go on.
create function ops.delete_archived_rows(
    p_run uuid, p_token uuid, p_batch integer, p_now timestamptz, p_lease_seconds integer
) returns table (deleted integer, finished boolean, lost boolean)
language plpgsql security definer
set search_path = ''
as $$
declare
    v_last bigint;
    v_events integer;
    v_attempts integer := 0;
begin
    update ops.event_archives a
    set lease_expires_at = p_now + make_interval(secs => p_lease_seconds)
    where a.run_id = p_run and a.claim_token = p_token and a.status = 'deleting'
    returning a.last_event_id into v_last;
    if not found then
        return query select 0, false, true;
        return;
    end if;
    delete from ops.events e
    where e.id in (select x.id from ops.events x where x.run_id = p_run and x.id <= v_last order by x.id limit p_batch);
    get diagnostics v_events = row_count;
    if v_events = p_batch then
        return query select v_events, false, false;
        return;
    end if;
    delete from ops.task_attempts t
    where (t.task_id, t.attempt) in (select x.task_id, x.attempt from ops.task_attempts x
                                      where x.run_id = p_run limit p_batch - v_events);
    get diagnostics v_attempts = row_count;
    if v_events + v_attempts = p_batch then
        return query select p_batch, false, false;
        return;
    end if;
    update ops.event_archives a
    set status = 'done', deleted_at = p_now, claim_token = null, lease_expires_at = null
    where a.run_id = p_run and a.claim_token = p_token;
    return query select v_events + v_attempts, true, false;
end;
$$;

-- A project's retention (project admins; audited). 0 keeps the project's events in Postgres forever.
create function ops.set_event_retention(p_project uuid, p_days integer) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
    v_old integer;
begin
    perform ops.require_project_role(p_project, 'admin');
    if p_days is null or p_days < 0 or p_days > 3650 then
        raise exception using errcode = 'LH422', column = 'event_retention_days',
            message = format('event retention must be between 0 (keep forever) and 3650 days, got %s', p_days);
    end if;
    select p.event_retention_days into v_old from ops.projects p where p.id = p_project for update;
    if not found then
        raise exception using errcode = 'LH404', column = 'project',
            message = format('project %s does not exist', p_project);
    end if;
    if v_old is distinct from p_days then
        update ops.projects set event_retention_days = p_days where id = p_project;
        insert into ops.audit_log (actor, entity, entity_id, project_id, action, detail)
        values (coalesce(nullif(current_setting('lakehouse.actor', true), ''), auth.uid()::text, session_user::text),
                'projects', p_project, p_project, 'event_retention',
                jsonb_build_object('old', v_old, 'new', p_days));
    end if;
    return p_days;
end;
$$;

revoke execute on function ops.claim_event_archives(timestamptz, text, integer, integer) from public;
revoke execute on function ops.record_event_archive(uuid, uuid, bigint, integer, integer, text, bigint, text, text,
                                                    bigint, text, timestamptz) from public;
revoke execute on function ops.delete_archived_rows(uuid, uuid, integer, timestamptz, integer) from public;
revoke execute on function ops.set_event_retention(uuid, integer) from public;
grant execute on function ops.claim_event_archives(timestamptz, text, integer, integer) to service_role;
grant execute on function ops.record_event_archive(uuid, uuid, bigint, integer, integer, text, bigint, text, text,
                                                   bigint, text, timestamptz) to service_role;
grant execute on function ops.delete_archived_rows(uuid, uuid, integer, timestamptz, integer) to service_role;
grant execute on function ops.set_event_retention(uuid, integer) to authenticated, service_role;
