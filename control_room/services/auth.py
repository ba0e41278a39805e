"""Who is calling: executor and user tokens (stored hashed), principals, and per-request DB scoping."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict

from control_room.db.rows import dict_rows, returned_id, scalar
from control_room.services import caps
from control_room.services.errors import CapExceeded, Conflict, Invalid, NotFound, Unauthorized

EXECUTOR_TOKEN_PREFIX = "lhx_"
USER_TOKEN_PREFIX = "lhu_"
SESSION_TOKEN_PREFIX = "lhs_"  # a signed-in user's web session (control_room/services/users.py)


@dataclass(frozen=True)
class ExecutorPrincipal:
    """An executor agent, authenticated by its bearer token; it belongs to one org and one pool."""

    executor_id: uuid.UUID
    name: str
    pool: str
    org_id: uuid.UUID | None = None


@dataclass(frozen=True)
class UserPrincipal:
    """A person (or their API token); rights come from project/org membership through RLS."""

    user_id: uuid.UUID
    email: str
    role_ceiling: str | None = None  # from an API token created with a ceiling: at most this role anywhere


@dataclass(frozen=True)
class ServicePrincipal:
    """Trusted in-process callers (CLI, background loops): act without RLS."""

    name: str = "service"


Principal = ExecutorPrincipal | UserPrincipal | ServicePrincipal


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token (no salt or KDF needed: tokens are random, not passwords)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    """A fresh random bearer token; shown once, stored only as its hash."""
    return prefix + secrets.token_urlsafe(32)


@asynccontextmanager
async def scoped(conn: AsyncConnection, principal: Principal) -> AsyncIterator[AsyncConnection]:
    """A transaction acting as the principal: users go through RLS exactly as PostgREST would.

    A submit a cap refused rolls its transaction back, and with it the refusal ops.submit_run recorded; when
    this is the outermost transaction, the refusal is recorded again in a short transaction of its own (still
    as the principal), so the caps page lists it."""
    outermost = conn.info.transaction_status == TransactionStatus.IDLE
    try:
        async with conn.transaction():
            await _act_as(conn, principal)
            yield conn
    except CapExceeded as exc:
        if exc.record is not None and outermost:
            async with conn.transaction():
                await _act_as(conn, principal)
                await caps.record_submit_refusal(conn, row=exc.record)
        raise


async def act_as_principal(conn: AsyncConnection, principal: Principal) -> None:
    """Act as the principal for the rest of the transaction the caller opened (``scoped`` opens one itself)."""
    await _act_as(conn, principal)


async def _act_as(conn: AsyncConnection, principal: Principal) -> None:
    if isinstance(principal, UserPrincipal):
        fields = {"sub": str(principal.user_id), "role": "authenticated", "email": principal.email}
        if principal.role_ceiling:
            fields["lakehouse_role_ceiling"] = principal.role_ceiling
        claims = json.dumps(fields)
        # One round trip, as PostgREST does it: set_config('role', ..., true) is SET LOCAL ROLE.
        await conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)", (claims,)
        )
    else:
        name = principal.name if not isinstance(principal, ExecutorPrincipal) else f"executor:{principal.name}"
        await conn.execute("select set_config('lakehouse.actor', %s, true)", (name,))


# How stale a token's last_used_at may get before a request writes it again: the tokens page shows it to the
# minute, and writing it on every request cost each API call a row update and a WAL flush (issue 21's ingest).
TOKEN_TOUCH_SECONDS = 60
# The live token's user, and its last_used_at moved to now when unset or older than the touch interval.
USER_TOKEN_LOOKUP = """
with token as (
    select t.id, t.last_used_at, u.id as user_id, u.email, t.role_ceiling, t.expires_at
    from ops.api_tokens t join ops.users u on u.id = t.user_id
    where t.token_hash = %(digest)s and t.revoked_at is null and (t.expires_at is null or t.expires_at > now())
      and u.is_active
), touched as (
    update ops.api_tokens t set last_used_at = now() from token
    where t.id = token.id
      and (token.last_used_at is null or token.last_used_at < now() - make_interval(secs => %(touch)s))
)
select user_id, email, role_ceiling, expires_at from token
"""
SESSION_LOOKUP = """
select u.id, u.email, s.expires_at from ops.user_sessions s join ops.users u on u.id = s.user_id
where s.token_hash = %s and s.revoked_at is null and s.expires_at > now() and u.is_active
"""

# Who a bearer token stands for (a ServicePrincipal has none).
Caller = ExecutorPrincipal | UserPrincipal


async def authenticate(conn: AsyncConnection, token: str) -> Caller:
    """The principal behind a bearer token, or Unauthorized (never echoing the token)."""
    return (await look_up(conn, token))[0]


async def look_up(conn: AsyncConnection, token: str) -> tuple[Caller, datetime | None]:
    """The principal behind a bearer token and when the token expires (None: not by itself), or
    Unauthorized (never echoing the token)."""
    digest = hash_token(token)
    if token.startswith(EXECUTOR_TOKEN_PREFIX):
        cur = await conn.execute(
            "select id, name, pool, org_id from ops.executors where token_hash = %s and token_revoked_at is null",
            (digest,),
        )
        row = await cur.fetchone()
        if row:
            return ExecutorPrincipal(executor_id=row[0], name=row[1], pool=row[2], org_id=row[3]), None
    elif token.startswith(USER_TOKEN_PREFIX):
        cur = await conn.execute(USER_TOKEN_LOOKUP, {"digest": digest, "touch": TOKEN_TOUCH_SECONDS})
        row = await cur.fetchone()
        if row:
            return UserPrincipal(user_id=row[0], email=row[1], role_ceiling=row[2]), row[3]
    elif token.startswith(SESSION_TOKEN_PREFIX):
        cur = await conn.execute(SESSION_LOOKUP, (digest,))
        row = await cur.fetchone()
        if row:
            return UserPrincipal(user_id=row[0], email=row[1]), row[2]
    raise Unauthorized("the bearer token is unknown, expired or revoked")


async def resolve_org(conn: AsyncConnection, org: str | None) -> uuid.UUID:
    """The org named by id or slug; with none given, the only org (an error names the choices otherwise)."""
    if org:
        found = await scalar(conn, "select id from ops.orgs where slug = %s or id::text = %s", (org.lower(), org))
        if found is None:
            raise NotFound(f'no org "{org}"; `lakehouse bundle` or `lakehouse run` creates the demo org', field="org")
        return uuid.UUID(str(found))
    cur = await conn.execute("select id, slug from ops.orgs order by slug limit 6")
    rows = await cur.fetchall()
    if len(rows) == 1:
        return uuid.UUID(str(rows[0][0]))
    if not rows:
        raise NotFound("there is no org yet; run `lakehouse run` once (it loads the demo org)", field="org")
    names = ", ".join(str(r[1]) for r in rows[:5])
    raise Invalid(f"several orgs exist ({names}, ...): say which one owns the executor with --org", field="org")


async def _executor_with_new_token(
    conn: AsyncConnection, on_conflict: str, *, name: str, pool: str, org_id: uuid.UUID, refused: str
) -> str:
    """Insert the executor (``on_conflict``: what to do when the name exists) with a new token; the token
    (shown once), or Conflict with ``refused`` when no row was written."""
    token = new_token(EXECUTOR_TOKEN_PREFIX)
    cur = await conn.execute(
        "insert into ops.executors (org_id, name, pool, token_hash, status) values (%s, %s, %s, %s, 'pending') "
        + on_conflict,
        (org_id, name, pool, hash_token(token)),
    )
    if await cur.fetchone() is None:
        raise Conflict(refused, field="name")
    return token


async def create_executor_token(conn: AsyncConnection, *, name: str, pool: str, org_id: uuid.UUID) -> str:
    """Create an executor identity in a pool of an org and return its token (shown once)."""
    return await _executor_with_new_token(
        conn, "on conflict (name) do nothing returning id", name=name, pool=pool, org_id=org_id,
        refused=f'an executor named "{name}" already exists; revoke it or pick another name',
    )  # fmt: skip


async def rotate_executor_token(conn: AsyncConnection, *, name: str, pool: str, org_id: uuid.UUID) -> str:
    """A new token for the executor of this name (created when missing); the old token stops working.

    The executor row (its history, leases and registry entry) is kept, so an agent restarted with the
    new token is the same executor; its earlier leases are handed back by its next heartbeat.
    """
    return await _executor_with_new_token(
        conn,
        "on conflict (name) do update set token_hash = excluded.token_hash, token_revoked_at = null, "
        "status = 'pending', drain_requested = false, pool = excluded.pool "
        "where ops.executors.org_id = excluded.org_id returning id",
        name=name, pool=pool, org_id=org_id,
        refused=f'executor "{name}" belongs to another org; pick another name',
    )  # fmt: skip


async def revoke_executor_token(conn: AsyncConnection, *, name: str) -> None:
    """Revoke an executor's token: its next request gets 401 and its leases expire."""
    cur = await conn.execute(
        "update ops.executors set token_revoked_at = now(), status = 'revoked' "
        "where name = %s and token_revoked_at is null returning id",
        (name,),
    )
    if await cur.fetchone() is None:
        raise NotFound(f'no active executor named "{name}"', field="name")


async def ensure_user(conn: AsyncConnection, *, email: str, display_name: str = "") -> uuid.UUID:
    """The id of the user with this email, created when missing."""
    if "@" not in email:
        raise Invalid("must be an email address", field="email")
    return await returned_id(
        conn,
        "insert into ops.users (email, display_name) values (lower(%s), %s) "
        "on conflict (email) do update set email = excluded.email returning id",
        (email, display_name),
    )


async def grant_project_role(conn: AsyncConnection, *, user_id: uuid.UUID, project_id: uuid.UUID, role: str) -> None:
    """Make the user a member of the project with the role (replacing any earlier role)."""
    if role not in ("viewer", "operator", "admin"):
        raise Invalid("must be viewer, operator or admin", field="role")
    await conn.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s) "
        "on conflict (project_id, user_id) do update set role = excluded.role",
        (project_id, user_id, role),
    )


ROLE_CEILINGS = ("viewer", "operator", "admin")


class ApiTokenPublic(BaseModel):
    """An API token as its owner sees it: never the token or its hash (the API's reply, too)."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    name: str
    token_prefix: str
    role_ceiling: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


async def create_api_token(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    name: str,
    expires_in_days: float | None = None,
    role_ceiling: str | None = None,
) -> str:
    """A new API token for the user (shown once; only its SHA-256 is stored)."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("give the token a name of 1-100 characters", field="name")
    if role_ceiling is not None and role_ceiling not in ROLE_CEILINGS:
        raise Invalid("must be viewer, operator or admin", field="role_ceiling")
    if expires_in_days is not None and not 0 < expires_in_days <= 3660:
        raise Invalid("must be between 0 and 3660 days", field="expires_in_days")
    token = new_token(USER_TOKEN_PREFIX)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "insert into ops.api_tokens (user_id, name, token_prefix, token_hash, expires_at, role_ceiling) "
            "values (%s, %s, %s, %s, now() + make_interval(secs => %s), %s) "
            "on conflict (user_id, name) do nothing returning id",
            (
                user_id,
                name,
                token[:8],
                hash_token(token),
                None if expires_in_days is None else expires_in_days * 86400,
                role_ceiling,
            ),
        )
        if await cur.fetchone() is None:
            raise Conflict(f'you already have a token named "{name}"; revoke it or pick another name', field="name")
    return token


async def list_api_tokens(conn: AsyncConnection, *, user_id: uuid.UUID) -> list[ApiTokenPublic]:
    """The user's API tokens, newest first (revoked ones included, marked)."""
    return [
        ApiTokenPublic(**row)
        for row in await dict_rows(
            conn,
            "select id, name, token_prefix, role_ceiling, created_at, expires_at, last_used_at, revoked_at "
            "from ops.api_tokens where user_id = %s order by created_at desc, name",
            (user_id,),
        )
    ]


async def revoke_api_token(conn: AsyncConnection, *, user_id: uuid.UUID, name: str) -> None:
    """Revoke one of the user's API tokens by name: its next request gets 401."""
    cur = await conn.execute(
        "update ops.api_tokens set revoked_at = now() where user_id = %s and name = %s and revoked_at is null "
        "returning id",
        (user_id, name),
    )
    if await cur.fetchone() is None:
        raise NotFound(f'no active token named "{name}"', field="name")


async def act_as(conn: AsyncConnection, actor: str, *, local: bool = False) -> None:
    """Name who the audit rows of this session (or, with ``local``, this transaction) are by."""
    await conn.execute("select set_config('lakehouse.actor', %s, %s)", (actor, local))


async def user_id_by_email(conn: AsyncConnection, email: str) -> uuid.UUID | None:
    """The id of the user with this e-mail (case-insensitive), or None."""
    found = await scalar(conn, "select id from ops.users where lower(email) = lower(%s)", (email,))
    return None if found is None else uuid.UUID(str(found))
