"""Sign-in for API clients and the caller's own API tokens: POST /auth/sessions returns a bearer token
(throttled exactly like the sign-in form), /tokens creates (shown once), lists and revokes `lhu_` tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from control_room.api.deps import Pool, User, bearer
from control_room.api.models import Number, Strict
from control_room.api.principals import PRINCIPALS
from control_room.services import auth, users
from control_room.services.auth import SESSION_TOKEN_PREFIX
from control_room.services.errors import Forbidden

router = APIRouter(tags=["auth"])


THROTTLED: dict[int | str, dict[str, Any]] = {"429": {"description": "Too many failed sign-ins: try again later."}}


class SessionCreate(Strict):
    email: str = Field(min_length=1, max_length=320, description="The account's email.")
    password: str = Field(min_length=1, max_length=1000, description="Its password (local accounts or Supabase Auth).")


class SessionPublic(BaseModel):
    token: str = Field(description="A session bearer token (`lhs_…`): send `Authorization: Bearer <token>`.")
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user_id: uuid.UUID
    email: str


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=100, description="Unique among your tokens, e.g. ci-nightly.")
    expires_in_days: Number | None = Field(default=90, gt=0, le=3660, description="Null: never expires.")
    role_ceiling: Literal["viewer", "operator", "admin"] | None = Field(
        default=None, description="Requests with this token act with at most this role, whatever your membership."
    )


# The contract's name for the service's ApiTokenPublic (no docstring: it would change the published schema).
class TokenPublic(auth.ApiTokenPublic):
    pass


class TokenCreated(TokenPublic):
    token: str = Field(description="The token itself: shown this once, only its hash is stored.")


class TokenPage(BaseModel):
    items: list[TokenPublic]


@router.post(
    "/auth/sessions", operation_id="signIn", response_model=SessionPublic, status_code=201, responses=THROTTLED
)
async def sign_in(body: SessionCreate, request: Request, db: Pool) -> dict[str, Any]:
    """Sign in with email and password; the reply's token authenticates API calls until it expires."""
    async with db.connection() as conn:
        session = await users.sign_in(
            conn,
            email=body.email,
            password=body.password,
            user_agent=request.headers.get("user-agent"),
            client=request.client.host if request.client else None,
        )
    return {
        "token": session.token,
        "expires_at": session.expires_at,
        "user_id": session.user.user_id,
        "email": session.user.email,
    }


@router.delete("/auth/sessions/current", operation_id="signOut", status_code=204, response_class=Response)
async def sign_out(
    user: User, db: Pool, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Response:
    """End the session whose token authenticates this request (API tokens are revoked under /tokens)."""
    token = credentials.credentials if credentials else ""
    if not token.startswith(SESSION_TOKEN_PREFIX):
        raise Forbidden("this request is not authenticated with a session token; revoke API tokens under /tokens")
    async with db.connection() as conn:
        await users.sign_out(conn, token=token)
    PRINCIPALS.forget_all()  # at once here; other processes on the database's notice
    return Response(status_code=204)


@router.post(
    "/tokens",
    operation_id="createApiToken",
    response_model=TokenCreated,
    status_code=201,
    responses={"409": {"description": "You already have a token of this name."}},
)
async def create_token(body: TokenCreate, user: User, db: Pool) -> dict[str, Any]:
    """Create one of your API tokens; the token is in this reply only."""
    if user.role_ceiling is not None:
        raise Forbidden("a token with a role ceiling cannot create tokens; sign in to create one")
    async with db.connection() as conn:
        token = await auth.create_api_token(
            conn,
            user_id=user.user_id,
            name=body.name,
            expires_in_days=body.expires_in_days,
            role_ceiling=body.role_ceiling,
        )
        (created,) = [t for t in await auth.list_api_tokens(conn, user_id=user.user_id) if t.name == body.name.strip()]
    return {**created.model_dump(), "token": token}


@router.get("/tokens", operation_id="listApiTokens", response_model=TokenPage)
async def list_tokens(user: User, db: Pool) -> dict[str, Any]:
    """Your API tokens (never the tokens themselves), newest first, with when each was last used."""
    async with db.connection() as conn:
        return {"items": [t.model_dump() for t in await auth.list_api_tokens(conn, user_id=user.user_id)]}


@router.delete("/tokens/{name}", operation_id="revokeApiToken", status_code=204, response_class=Response)
async def revoke_token(name: str, user: User, db: Pool) -> Response:
    """Revoke one of your API tokens by name: its next request gets 401."""
    async with db.connection() as conn:
        await auth.revoke_api_token(conn, user_id=user.user_id, name=name)
    PRINCIPALS.forget_all()  # at once here; other processes on the database's notice
    return Response(status_code=204)
