-- Run specs are validated once, in Python, against the engines' models (control_room/specs/tasks.py, published
-- as TaskSpec in the contract). ops.validate_run_spec no longer repeats those field rules (key and engine
-- patterns, ranges, types of labels and pool): the columns' check constraints hold what the tables need, and
-- this function keeps only what building a run from the JSON requires: tasks is a non-empty array of objects,
-- each with a key and an engine, keys unique, dependencies known and acyclic, and the numbers the insert casts
-- are whole numbers (so a direct RPC caller gets a 422 naming the field, not a cast error).
create or replace function ops.validate_run_spec(p_spec jsonb) returns void
language plpgsql
set search_path = ''
as $$
declare
    v_tasks jsonb := p_spec -> 'tasks';
    v_task jsonb;
    v_keys text[] := '{}';
    v_key text;
    v_dep text;
    v_name text;
    v_done text[] := '{}';
    v_ready text[];
    i integer;
begin
    if p_spec is null or jsonb_typeof(p_spec) <> 'object' then
        perform ops.invalid('spec', 'must be a JSON object with a "tasks" array');
    end if;
    if v_tasks is null or jsonb_typeof(v_tasks) <> 'array' or jsonb_array_length(v_tasks) = 0 then
        perform ops.invalid('spec.tasks', 'must be a non-empty array of tasks');
    end if;
    if jsonb_array_length(v_tasks) > 1000 then
        perform ops.invalid('spec.tasks', 'at most 1000 tasks per run');
    end if;
    for i in 0 .. jsonb_array_length(v_tasks) - 1 loop
        v_task := v_tasks -> i;
        if jsonb_typeof(v_task) <> 'object' then
            perform ops.invalid(format('spec.tasks[%s]', i), 'must be an object');
        end if;
        foreach v_name in array array['key', 'engine'] loop
            if jsonb_typeof(v_task -> v_name) is distinct from 'string' then
                perform ops.invalid(format('spec.tasks[%s].%s', i, v_name), 'required: a string');
            end if;
        end loop;
        v_key := v_task ->> 'key';
        if v_key = any(v_keys) then
            perform ops.invalid(format('spec.tasks[%s].key', i), format('duplicate task key "%s"', v_key));
        end if;
        v_keys := v_keys || v_key;
        foreach v_name in array array['depends_on', 'labels', 'required_labels'] loop
            if v_task ? v_name and (jsonb_typeof(v_task -> v_name) <> 'array' or exists (
                    select 1 from jsonb_array_elements(v_task -> v_name) e where jsonb_typeof(e) <> 'string')) then
                perform ops.invalid(format('spec.tasks[%s].%s', i, v_name), 'must be an array of strings');
            end if;
        end loop;
        foreach v_name in array array['timeout_s', 'max_attempts', 'retry_backoff_s'] loop
            if jsonb_typeof(v_task -> v_name) not in ('null') and (jsonb_typeof(v_task -> v_name) <> 'number'
                    or (v_task ->> v_name)::numeric <> trunc((v_task ->> v_name)::numeric)
                    or abs((v_task ->> v_name)::numeric) > 2147483647) then
                perform ops.invalid(format('spec.tasks[%s].%s', i, v_name), 'must be a whole number');
            end if;
        end loop;
    end loop;
    for i in 0 .. jsonb_array_length(v_tasks) - 1 loop
        for v_dep in select jsonb_array_elements_text(coalesce(v_tasks -> i -> 'depends_on', '[]')) loop
            if not v_dep = any(v_keys) then
                perform ops.invalid(format('spec.tasks[%s].depends_on', i), format('unknown task key "%s"', v_dep));
            end if;
        end loop;
    end loop;
    -- Kahn's algorithm: repeatedly take the tasks whose dependencies are all done.
    loop
        select array_agg(t ->> 'key') into v_ready
        from jsonb_array_elements(v_tasks) t
        where not (t ->> 'key') = any(v_done)
          and ops.json_text_array(t -> 'depends_on') <@ v_done;
        exit when v_ready is null;
        v_done := v_done || v_ready;
    end loop;
    if cardinality(v_done) < cardinality(v_keys) then
        perform ops.invalid('spec.tasks', format('dependency cycle among tasks %s',
            array_to_string(array(select k from unnest(v_keys) k where not k = any(v_done) order by k), ', ')));
    end if;
end;
$$;
