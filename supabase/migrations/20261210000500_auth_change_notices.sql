-- Who-is-calling look-ups, fifth pass of issue 25 (dispatch latency, event append). Every API request
-- looked its bearer token up in the database: a pool checkout and a round trip before the route's own
-- work, a tenth of a submit and a fifth of an event append. The API now remembers the principal behind a
-- token (control_room/api/principals.py) and forgets every remembered principal when the database says
-- something they depend on changed: these triggers NOTIFY 'lakehouse_auth_changed' whenever a statement
-- changes what a token look-up reads (a token revoked, expired, deleted or given a new hash, a user
-- deactivated or renamed, a session ended, an executor's token replaced or revoked, its pool or org moved).
-- Only those columns: the look-up's own touch of api_tokens.last_used_at and an executor's heartbeat
-- columns notify nobody. New rows need no notice: a refusal is never remembered.

set local lock_timeout = '10s';
set local statement_timeout = '60s';

create trigger api_tokens_auth_changed
    after update of user_id, token_hash, expires_at, revoked_at, role_ceiling or delete on ops.api_tokens
    for each statement execute function ops.notify_statement('lakehouse_auth_changed');

create trigger user_sessions_auth_changed
    after update of user_id, token_hash, expires_at, revoked_at or delete on ops.user_sessions
    for each statement execute function ops.notify_statement('lakehouse_auth_changed');

create trigger users_auth_changed
    after update of email, is_active or delete on ops.users
    for each statement execute function ops.notify_statement('lakehouse_auth_changed');

create trigger executors_auth_changed
    after update of name, pool, org_id, token_hash, token_revoked_at or delete on ops.executors
    for each statement execute function ops.notify_statement('lakehouse_auth_changed');
