"""Request dependencies: the DB pool, who is calling (executor or user) and a connection acting as the user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from control_room import session_cookie
from control_room.api.principals import principal_of
from control_room.config import get_settings
from control_room.db.connection import get_pool
from control_room.services.auth import ExecutorPrincipal, UserPrincipal, scoped
from control_room.services.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="Executor token (lhx_…) or user API token (lhu_…).")


async def pool() -> AsyncConnectionPool:
    return await get_pool()


Pool = Annotated[AsyncConnectionPool, Depends(pool)]


# The web app's HttpOnly session cookie also opens reads (artifact downloads from the browser); never
# writes, so a request another site makes the browser send cannot change anything (besides SameSite=Lax).
COOKIE_METHODS = frozenset({"GET", "HEAD"})


async def principal(
    request: Request, db: Pool, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ExecutorPrincipal | UserPrincipal:
    token = credentials.credentials if credentials is not None and credentials.scheme.lower() == "bearer" else ""
    if not token and request.method in COOKIE_METHODS:
        token = session_cookie.session_token(request.headers.get("cookie", ""), get_settings())
    if not token:
        raise Unauthorized("send `Authorization: Bearer <token>`")
    return await principal_of(db, token)


async def executor(who: Annotated[ExecutorPrincipal | UserPrincipal, Depends(principal)]) -> ExecutorPrincipal:
    if not isinstance(who, ExecutorPrincipal):
        raise Forbidden("this operation is for executor agents; use an executor token (lakehouse executors token)")
    return who


async def user(who: Annotated[ExecutorPrincipal | UserPrincipal, Depends(principal)]) -> UserPrincipal:
    if not isinstance(who, UserPrincipal):
        raise Forbidden("this operation is for users; use a user API token")
    return who


Executor = Annotated[ExecutorPrincipal, Depends(executor)]
User = Annotated[UserPrincipal, Depends(user)]


async def user_connection(who: User, db: Pool) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in one transaction acting as the calling user (RLS and role checks in SQL apply)."""
    async with db.connection() as conn, scoped(conn, who):
        yield conn


# Scope "function": the transaction ends (commit, or rollback on an error the route raises) before the
# response is sent, so a client that reads right after a write sees it, and a failed commit is the
# route's error, never a 200 for a change that did not happen.
UserConnection = Annotated[AsyncConnection, Depends(user_connection, scope="function")]
