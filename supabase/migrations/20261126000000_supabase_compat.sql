-- Supabase compatibility: the roles and auth.* functions that Supabase provides, created only
-- where missing, so the same RLS policies run on plain Postgres and are a no-op on Supabase.
-- auth.uid()/auth.role()/auth.jwt() read `request.jwt.claims` exactly as PostgREST sets it.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
exception when duplicate_object then null;  -- another database of the cluster created it first
end $$;

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
exception when duplicate_object then null;
end $$;

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
exception when duplicate_object then null;
end $$;

create schema if not exists auth;

do $$
begin
    if to_regprocedure('auth.jwt()') is null then
        create function auth.jwt() returns jsonb
        language sql stable
        as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $f$;
    end if;
    if to_regprocedure('auth.uid()') is null then
        create function auth.uid() returns uuid
        language sql stable
        as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
            )::uuid
        $f$;
    end if;
    if to_regprocedure('auth.role()') is null then
        create function auth.role() returns text
        language sql stable
        as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.role', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
            )::text
        $f$;
    end if;
end $$;

-- On Supabase these grants already exist (and the auth schema is not ours to grant on).
do $$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
        if not has_schema_privilege(r, 'auth', 'usage') then
            execute format('grant usage on schema auth to %I', r);
        end if;
    end loop;
end $$;
