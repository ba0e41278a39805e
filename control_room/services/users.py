"""People: local accounts (argon2 password hashes), web sessions with expiry, Supabase Auth, memberships.

A web session is a random ``lhs_`` token kept by the browser; only its SHA-256 is stored, in
ops.user_sessions, with an expiry. The same token is accepted by the HTTP API as a bearer token
(``services.auth.authenticate``). With ``SUPABASE_URL`` configured, credentials are checked by
Supabase Auth (GoTrue, through supabase-py's client) and the person's Supabase user id becomes
their ops.users id, so memberships and RLS (``auth.uid()``) refer to the same uuid either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from control_room.config import Settings, get_settings
from control_room.db.rows import model_rows, one_row, returned_id, scalar
from control_room.services.auth import SESSION_TOKEN_PREFIX, UserPrincipal, hash_token, new_token, scoped
from control_room.services.errors import Invalid, NotFound, ServiceError, Unauthorized

if TYPE_CHECKING:  # the SQLModel mirror takes a while to import (`lakehouse users`): loaded on use
    from control_room.db.tables import User

ROLES = ("viewer", "operator", "admin")
MIN_PASSWORD_LENGTH = 10
DEMO_ADMIN_EMAIL = "admin@demo.example"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so a wrong email costs as long as a wrong password (made on
    first use: hashing at import would slow every CLI command)."""
    return _hasher.hash(secrets.token_urlsafe(16))


WRONG_CREDENTIALS = "the email or password is wrong"


class SignInThrottled(ServiceError, status=429, title="Too many sign-in attempts"):
    """Too many failed sign-ins for an account or from a client address."""


class AuthProviderUnavailable(ServiceError, status=503, title="Sign-in provider unavailable"):
    """Supabase Auth could not be reached or answered with a server error."""


@dataclass(frozen=True)
class SignedInUser:
    """The person behind a valid session."""

    user_id: uuid.UUID
    email: str
    display_name: str

    @classmethod
    def of(cls, account: User) -> SignedInUser:
        """The person of a local account."""
        return cls(user_id=account.id, email=account.email, display_name=account.display_name)

    @property
    def principal(self) -> UserPrincipal:
        """The principal that services scope database work to (RLS as this user)."""
        return UserPrincipal(user_id=self.user_id, email=self.email)


@dataclass(frozen=True)
class NewSession:
    """A session just created by signing in; ``token`` is shown to the browser once and never stored."""

    token: str
    user: SignedInUser
    expires_at: datetime


@dataclass(frozen=True)
class AdminAccount:
    """Result of ``create_admin``: the password is only known here (generated when not given)."""

    user_id: uuid.UUID
    email: str
    password: str
    orgs: list[str]


@dataclass(frozen=True)
class ProjectMembership:
    """A project the user can see, with their highest role on it (project or org membership)."""

    project_id: uuid.UUID
    slug: str
    name: str
    org_name: str
    role: str


def _check_email(email: str) -> str:
    normalized = email.strip().lower()
    if not EMAIL.match(normalized):
        raise Invalid(f'"{email}" is not an email address', field="email")
    return normalized


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"must be at least {MIN_PASSWORD_LENGTH} characters long", field="password")


def generate_password() -> str:
    """A random password for generated accounts (about 96 bits)."""
    return secrets.token_urlsafe(12)


async def hash_password(password: str) -> str:
    """Argon2id hash of a password; hashing is deliberately slow, so it runs in a worker thread."""
    return await asyncio.to_thread(_hasher.hash, password)


async def _password_matches(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


async def create_local_user(conn: AsyncConnection, *, email: str, password: str, display_name: str = "") -> uuid.UUID:
    """Create a local account, or set the password of the existing one with this email."""
    normalized = _check_email(email)
    _check_password(password)
    password_hash = await hash_password(password)
    return await returned_id(
        conn,
        "insert into ops.users (email, display_name, password_hash) values (%s, %s, %s) "
        "on conflict (email) do update set password_hash = excluded.password_hash, is_active = true, "
        "display_name = case when excluded.display_name = '' then ops.users.display_name "
        "else excluded.display_name end "
        "returning id",
        (normalized, display_name, password_hash),
    )


async def create_admin(
    conn: AsyncConnection, *, email: str, password: str | None = None, display_name: str = ""
) -> AdminAccount:
    """A local account that is admin of every org (and so of every project); the password is
    generated when not given. Run it again to reset the password."""
    chosen = password if password is not None else generate_password()
    async with conn.transaction():
        user_id = await create_local_user(conn, email=email, password=chosen, display_name=display_name)
        cur = await conn.execute(
            "insert into ops.org_members (org_id, user_id, role) select o.id, %s, 'admin' from ops.orgs o "
            "on conflict (org_id, user_id) do update set role = 'admin' returning org_id",
            (user_id,),
        )
        org_ids = [row[0] for row in await cur.fetchall()]
        cur = await conn.execute("select slug from ops.orgs where id = any(%s) order by slug", (org_ids,))
        orgs = [str(row[0]) for row in await cur.fetchall()]
    return AdminAccount(user_id=user_id, email=_check_email(email), password=chosen, orgs=orgs)


def create_demo_admin(database_url: str, *, email: str = DEMO_ADMIN_EMAIL) -> AdminAccount:
    """The demo's first admin with a generated password (for `lakehouse run` after loading demo data)."""

    async def create() -> AdminAccount:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await create_admin(conn, email=email, display_name="Demo Admin")

    return asyncio.run(create())


async def find_user(conn: AsyncConnection, *, email: str) -> SignedInUser:
    """The active user with this email."""
    account = await _active_account(conn, _check_email(email))
    if account is None:
        raise NotFound(f'no active user with email "{email}"', field="email")
    return SignedInUser.of(account)


async def _active_account(conn: AsyncConnection, email: str) -> User | None:
    """The active local account with this email (already normalized), or None."""
    from control_room.db.tables import User

    async with conn.cursor(row_factory=model_rows(User)) as cur:
        await cur.execute("select * from ops.users where email = %s and is_active", (email,))
        return await cur.fetchone()


async def grant_role(conn: AsyncConnection, *, email: str, project: str, role: str) -> None:
    """Make the user a member of a project (id or slug) with the role, replacing an earlier one."""
    if role not in ROLES:
        raise Invalid(f"must be one of {', '.join(ROLES)}", field="role")
    user = await find_user(conn, email=email)
    try:
        project_id: uuid.UUID | None = uuid.UUID(project)
    except ValueError:
        project_id = None
    cur = await conn.execute("select id from ops.projects where id = %s or slug = %s limit 2", (project_id, project))
    rows = await cur.fetchall()
    if not rows:
        raise NotFound(f'project "{project}" does not exist', field="project")
    if len(rows) > 1:
        raise Invalid(f'project slug "{project}" exists in several orgs; pass the project id', field="project")
    await conn.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s) "
        "on conflict (project_id, user_id) do update set role = excluded.role",
        (rows[0][0], user.user_id, role),
    )


async def _start_session(
    conn: AsyncConnection, user: SignedInUser, *, user_agent: str | None, settings: Settings
) -> NewSession:
    token = new_token(SESSION_TOKEN_PREFIX)
    expires_at = await scalar(
        conn,
        "insert into ops.user_sessions (user_id, token_hash, expires_at, user_agent) "
        "values (%s, %s, now() + make_interval(secs => %s), %s) returning expires_at",
        (user.user_id, hash_token(token), settings.session_hours * 3600, (user_agent or "")[:300] or None),
    )
    await conn.execute("update ops.users set last_login_at = now() where id = %s", (user.user_id,))
    return NewSession(token=token, user=user, expires_at=expires_at)


async def sign_in(
    conn: AsyncConnection,
    *,
    email: str,
    password: str,
    user_agent: str | None = None,
    client: str | None = None,
    settings: Settings | None = None,
) -> NewSession:
    """Check the credentials (Supabase Auth when configured, else the local argon2 hash) and
    start a session. Wrong credentials raise Unauthorized without saying which part was wrong;
    too many failures for the account or from the client address raise SignInThrottled (429)."""
    settings = settings or get_settings()
    if not email.strip() or not password:
        raise Invalid("enter your email and password", field="email" if not email.strip() else "password")
    account, address = email.strip().lower(), (client or "")[:100]
    await _refuse_when_throttled(conn, email=account, client=address, settings=settings)
    try:
        user = await _identity(conn, email=email, password=password, settings=settings)
    except Unauthorized:
        await conn.execute("insert into ops.sign_in_failures (email, client) values (%s, %s)", (account, address))
        raise
    await conn.execute("delete from ops.sign_in_failures where email = %s", (account,))
    return await _start_session(conn, user, user_agent=user_agent, settings=settings)


async def _refuse_when_throttled(conn: AsyncConnection, *, email: str, client: str, settings: Settings) -> None:
    """SignInThrottled when the account or the client address failed too often within the window."""
    row = await one_row(
        conn,
        "select count(*) filter (where email = %s), count(*) filter (where client = %s and client <> ''), "
        "ceil(extract(epoch from (min(at) + make_interval(secs => %s) - now())) / 60)::int "
        "from ops.sign_in_failures where at > now() - make_interval(secs => %s) and (email = %s or client = %s)",
        (email, client, settings.sign_in_window_seconds, settings.sign_in_window_seconds, email, client),
    )
    by_account, by_client, minutes = int(row[0]), int(row[1]), max(int(row[2] or 1), 1)
    if by_account >= settings.sign_in_max_failures_per_account:
        raise SignInThrottled(
            f"too many failed sign-ins for this account: try again in {minutes} minute(s), "
            "or ask an admin to reset the password"
        )
    if by_client >= settings.sign_in_max_failures_per_client:
        raise SignInThrottled(f"too many failed sign-ins from your address: try again in {minutes} minute(s)")


async def _identity(conn: AsyncConnection, *, email: str, password: str, settings: Settings) -> SignedInUser:
    """Who the credentials belong to; Unauthorized when they are wrong."""
    if settings.supabase_url:
        user = await _supabase_identity(email=email.strip(), password=password, settings=settings)
        row = await one_row(
            conn,
            "insert into ops.users (id, email) values (%s, lower(%s)) "
            "on conflict (id) do update set email = excluded.email returning display_name, is_active",
            (user.user_id, user.email),
        )
        if not row[1]:
            raise Unauthorized("this account is disabled in the control room; ask an admin")
        user = SignedInUser(user_id=user.user_id, email=user.email.lower(), display_name=row[0])
    else:
        account = await _active_account(conn, email.strip().lower())
        stored_hash = account.password_hash if account is not None else None
        if not await _password_matches(stored_hash, password) or account is None:
            raise Unauthorized(WRONG_CREDENTIALS)
        user = SignedInUser.of(account)
    return user


async def _supabase_identity(*, email: str, password: str, settings: Settings) -> SignedInUser:
    """Who Supabase Auth says these credentials belong to.

    The password grant returns an access token; ``GET /user`` with that token confirms the identity,
    and the Supabase session is then signed out again: the control room keeps its own session.
    """
    from supabase_auth import AsyncGoTrueClient
    from supabase_auth.errors import AuthApiError, AuthError, AuthRetryableError

    assert settings.supabase_url is not None
    key = settings.supabase_anon_key.get_secret_value() if settings.supabase_anon_key else ""
    client = AsyncGoTrueClient(
        url=settings.supabase_url.rstrip("/") + "/auth/v1",
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
        auto_refresh_token=False,
        persist_session=False,
    )
    try:
        try:
            response = await client.sign_in_with_password({"email": email, "password": password})
        except AuthApiError as exc:
            if exc.code == "email_not_confirmed":
                raise Unauthorized("confirm your email address first (see the message Supabase sent you)") from exc
            if exc.status in (400, 422):  # GoTrue's answer to wrong credentials
                raise Unauthorized(WRONG_CREDENTIALS) from exc
            # 401/403 come from the API gateway (wrong SUPABASE_ANON_KEY), 5xx from the service.
            raise AuthProviderUnavailable(
                f"Supabase Auth refused the request ({exc.status}: {exc.message}); check SUPABASE_URL and "
                "SUPABASE_ANON_KEY"
            ) from exc
        except AuthRetryableError as exc:
            raise AuthProviderUnavailable(
                f"Supabase Auth at {settings.supabase_url} is unreachable ({exc.message}); try again shortly"
            ) from exc
        session = response.session
        if session is None or response.user is None:
            raise Unauthorized("Supabase Auth did not start a session for this account (is the email confirmed?)")
        try:
            confirmed = await client.get_user(session.access_token)
        except AuthError as exc:
            raise AuthProviderUnavailable(f"Supabase Auth did not confirm the identity: {exc.message}") from exc
        if confirmed is None or confirmed.user.id != response.user.id:
            raise Unauthorized("Supabase Auth returned a different user for the issued token")
        # The control room keeps its own session; the Supabase one is no longer needed.
        # A Supabase session left behind expires on its own; signing in already succeeded.
        with contextlib.suppress(AuthError):
            await client.sign_out({"scope": "local"})
        return SignedInUser(user_id=uuid.UUID(confirmed.user.id), email=confirmed.user.email or email, display_name="")
    finally:
        await client.close()


async def session_user(conn: AsyncConnection, *, token: str) -> SignedInUser:
    """The user of a valid (unexpired, unrevoked) session token; Unauthorized otherwise."""
    if not token.startswith(SESSION_TOKEN_PREFIX):
        raise Unauthorized("not signed in")
    cur = await conn.execute(
        "select u.id, u.email, u.display_name from ops.user_sessions s join ops.users u on u.id = s.user_id "
        "where s.token_hash = %s and s.revoked_at is null and s.expires_at > now() and u.is_active",
        (hash_token(token),),
    )
    row = await cur.fetchone()
    if row is None:
        raise Unauthorized("the session has expired or was signed out; sign in again")
    return SignedInUser(user_id=row[0], email=row[1], display_name=row[2])


async def sign_out(conn: AsyncConnection, *, token: str) -> None:
    """Revoke a session (idempotent)."""
    await conn.execute(
        "update ops.user_sessions set revoked_at = now() where token_hash = %s and revoked_at is null",
        (hash_token(token),),
    )


async def memberships(conn: AsyncConnection, user: SignedInUser) -> tuple[list[ProjectMembership], bool]:
    """The projects the user sees with their role on each (through RLS, as the user), and whether
    they are an org admin (who manages executors)."""
    async with scoped(conn, user.principal), conn.cursor(row_factory=dict_row) as cur:
        # orgs is left-joined: the orgs_read policy hides an org from a project's operators.
        await cur.execute(
            "select p.id, p.slug, p.name, coalesce(o.name, '') as org_name, ops.project_role(p.id) as role "
            "from ops.projects p left join ops.orgs o on o.id = p.org_id order by o.name, p.name"
        )
        rows = await cur.fetchall()
        await cur.execute("select ops.is_any_org_admin() as admin")
        admin = await cur.fetchone()
    projects = [
        ProjectMembership(
            project_id=row["id"], slug=row["slug"], name=row["name"], org_name=row["org_name"], role=row["role"]
        )
        for row in rows
        if row["role"] in ROLES
    ]
    return projects, bool(admin and admin["admin"])
