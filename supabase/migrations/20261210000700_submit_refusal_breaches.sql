-- A refused submit counts among its cap's refusals of the day whichever way it was refused. ops.submit_run
-- counts the refusal in ops.cap_usage.breaches (the "refusals today" beside each cap, the cap_breach alert
-- rule's signal) in the submit's transaction; the web app, the CLI and job runs roll that transaction back and
-- record the refusal again with ops.record_submit_refusal, which kept the row but lost the count (a refused
-- submit through them showed no refusal today and fired no cap_breach alert). It now counts what it records:
-- one breach for a new row, one for a repeat it adds, none for a row sent again. The API's submit commits the
-- refusal instead (20261210000600), so its count stands as ops.submit_run made it.

set local lock_timeout = '10s';
set local statement_timeout = '60s';

-- Record again a refusal whose transaction rolled back (the row ops.pending_submit_refusal gave). Only what
-- is true is recorded: the caller may submit in the project, and the cap is a runs_per_day cap of the
-- project's org that applies there and is full today; an end user is recorded as themself. Idempotent on the
-- row's id, also in the cap's count of breaches. Returns whether a row was recorded.
create or replace function ops.record_submit_refusal(p_row jsonb) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
    v_project ops.projects;
    v_env uuid;
    v_cap ops.caps;
    v_id uuid;
    v_principal_id uuid;
    v_principal text;
    v_used integer;
    v_repeats integer := greatest(coalesce((p_row ->> 'repeats')::integer, 1), 1);
    v_before integer;
    v_after integer;
begin
    if p_row is null or jsonb_typeof(p_row) <> 'object' or coalesce(p_row ->> 'layer', '') <> 'submit' then
        return false;
    end if;
    select * into v_project from ops.projects p where p.id = (p_row ->> 'project_id')::uuid;
    if not found then
        return false;
    end if;
    perform ops.require_project_role(v_project.id, 'operator');
    select e.id into v_env from ops.environments e
    where e.id = (p_row ->> 'environment_id')::uuid and e.project_id = v_project.id;
    select * into v_cap from ops.caps c where c.id = (p_row ->> 'cap_id')::uuid;
    if v_env is null or v_cap.id is null or v_cap.org_id <> v_project.org_id or not v_cap.enabled
       or v_cap.kind <> 'runs_per_day'
       or not (v_cap.scope in ('org', 'engine') or (v_cap.scope = 'project' and v_cap.project_id = v_project.id)
               or (v_cap.scope = 'environment' and v_cap.environment_id = v_env))
       or coalesce((select u.runs from ops.cap_usage u where u.cap_id = v_cap.id and u.day = ops.utc_today()), 0)
          < v_cap.limit_value then
        return false;
    end if;
    v_used := coalesce((select u.runs from ops.cap_usage u where u.cap_id = v_cap.id and u.day = ops.utc_today()), 0);
    v_principal_id := case when ops.caller_is_end_user() then auth.uid() else (p_row ->> 'principal_id')::uuid end;
    v_principal := case when ops.caller_is_end_user() then coalesce(ops.caller_email(), '')
                        else left(coalesce(p_row ->> 'principal', ''), 500) end;
    select e.repeats into v_before from ops.cap_refusal_events e where e.id = (p_row ->> 'id')::uuid;
    insert into ops.cap_refusal_events as e (id, org_id, cap_id, cap_name, cap_kind, cap_scope, limit_value, layer,
                                             project_id, environment_id, run_name, principal_id, principal, trigger,
                                             message, at, last_at, repeats)
    values ((p_row ->> 'id')::uuid, v_cap.org_id, v_cap.id, v_cap.name, v_cap.kind, v_cap.scope, v_cap.limit_value,
            'submit', v_project.id, v_env, left(coalesce(p_row ->> 'run_name', ''), 500), v_principal_id,
            v_principal, left(coalesce(p_row ->> 'trigger', ''), 100),
            format('cap "%s" (runs_per_day = %s, %s scope) is reached: %s runs today; try tomorrow or raise the cap',
                   v_cap.name, v_cap.limit_value, v_cap.scope, v_used),
            -- a refusal of the last few minutes, not a date the caller chose
            least(now(), greatest(coalesce((p_row ->> 'at')::timestamptz, now()), now() - interval '5 minutes')),
            now(), 1)
    on conflict (id) do update
        -- the row was a repeat (ops.note_submit_refusal counted it): count it once, however often re-sent
        set repeats = greatest(e.repeats, least(v_repeats, e.repeats + 1)), last_at = excluded.last_at,
            message = excluded.message
        where e.cap_id = excluded.cap_id and e.project_id = excluded.project_id
    returning e.id, e.repeats into v_id, v_after;
    if v_id is not null and v_after > coalesce(v_before, 0) then
        insert into ops.cap_usage as u (cap_id, day, breaches) values (v_cap.id, ops.utc_today(), v_after - coalesce(v_before, 0))
        on conflict (cap_id, day) do update set breaches = u.breaches + excluded.breaches, updated_at = now();
    end if;
    return v_id is not null;
end;
$$;
