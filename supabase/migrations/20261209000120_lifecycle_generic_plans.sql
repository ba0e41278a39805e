-- The lifecycle functions run the same statements thousands of times a second with different arrays of
-- ids: their plans do not depend on the values (primary keys, the claim's partial indexes), so they use
-- the cached generic plan instead of planning each statement again on every call (the default "auto"
-- plans each statement with its values at least 5 times per session, and keeps doing so whenever the
-- generic plan's estimate is worse than the custom plans', which it is for arrays of ids). Measured:
-- a one-task claim used about a quarter less server CPU (bench/lifecycle_profile.py has the batched figures).

alter function ops.claim_tasks(uuid, text[], text[], integer, integer, uuid) set plan_cache_mode = force_generic_plan;
alter function ops.finalize_tasks(jsonb) set plan_cache_mode = force_generic_plan;
alter function ops.refresh_runs_status(uuid[]) set plan_cache_mode = force_generic_plan;
alter function ops.append_events(uuid, uuid, jsonb) set plan_cache_mode = force_generic_plan;
