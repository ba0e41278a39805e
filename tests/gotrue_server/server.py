"""Supabase Auth (GoTrue) as the control room meets it behind a Supabase project's API gateway.

Implemented the way supabase/auth and the gateway answer, for the endpoints the control room calls:

* ``POST /auth/v1/token?grant_type=password`` with ``{"email", "password"}``: a session (HS256 JWT
  access token with ``sub``, ``aud``, ``role``, ``email``, ``session_id``, ``exp``; refresh token;
  the user object), or 400 ``invalid_credentials`` / ``email_not_confirmed``.
* ``GET /auth/v1/user`` with ``Authorization: Bearer <access token>``: the user; 401
  ``no_authorization`` without a token, 403 ``bad_jwt`` for a bad or expired one, 403
  ``session_not_found`` once its session was signed out.
* ``POST /auth/v1/logout?scope=global|local|others``: 204; ends the token's session (local), all
  of the user's sessions (global) or all but it (others).

The gateway refuses requests without a valid ``apikey`` header (401, ``Invalid API key``). Errors
use GoTrue's two shapes: ``{"code": <error code>, "message"}`` when the client sent
``X-Supabase-Api-Version: 2024-01-01`` (echoed back in the response), else the legacy
``{"code": <http status>, "error_code", "msg"}``.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION_2024 = "2024-01-01"
ACCESS_TOKEN_SECONDS = 3600


@dataclass
class GoTrueUser:
    """A user of the test project."""

    email: str
    password: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    confirmed: bool = True
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_json(self, last_sign_in_at: str | None = None) -> dict[str, Any]:
        confirmed_at = self.created_at if self.confirmed else None
        return {
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email,
            "email_confirmed_at": confirmed_at,
            "phone": "",
            "confirmed_at": confirmed_at,
            "last_sign_in_at": last_sign_in_at,
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {"email": self.email, "email_verified": self.confirmed},
            "identities": [
                {
                    "identity_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
                    "id": self.id,
                    "user_id": self.id,
                    "identity_data": {"email": self.email, "sub": self.id},
                    "provider": "email",
                    "last_sign_in_at": last_sign_in_at,
                    "created_at": self.created_at,
                    "updated_at": self.created_at,
                    "email": self.email,
                }
            ],
            "created_at": self.created_at,
            "updated_at": last_sign_in_at or self.created_at,
            "is_anonymous": False,
        }


@dataclass
class GoTrueServer:
    """State of the test project: users, live sessions, and every request received."""

    anon_key: str = field(default_factory=lambda: "anon-" + secrets.token_hex(16))
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    users: dict[str, GoTrueUser] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # session id -> user id
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)
    url: str = ""

    def add_user(self, email: str, password: str, *, confirmed: bool = True) -> GoTrueUser:
        user = GoTrueUser(email=email.lower(), password=password, confirmed=confirmed)
        self.users[user.email] = user
        return user

    def app(self) -> FastAPI:
        app = FastAPI()

        def error(request: Request, status: int, code: str, message: str) -> JSONResponse:
            if request.headers.get(API_VERSION_HEADER) == API_VERSION_2024:
                return JSONResponse(
                    {"code": code, "message": message}, status, headers={API_VERSION_HEADER: API_VERSION_2024}
                )
            return JSONResponse({"code": status, "error_code": code, "msg": message}, status)

        def gateway_refuses(request: Request) -> JSONResponse | None:
            self.requests.append(
                (request.method, request.url.path + ("?" + request.url.query if request.url.query else ""))
            )
            if request.headers.get("apikey") != self.anon_key:
                return JSONResponse(
                    {
                        "message": "Invalid API key",
                        "hint": "Double check your Supabase `anon` or `service_role` API key.",
                    },
                    401,
                )
            return None

        def claims_of(request: Request) -> tuple[dict[str, Any] | None, JSONResponse | None]:
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer ") or not header[7:].strip():
                return None, error(request, 401, "no_authorization", "This endpoint requires a Bearer token")
            try:
                claims = jwt.decode(header[7:].strip(), self.jwt_secret, algorithms=["HS256"], audience="authenticated")
            except jwt.PyJWTError as exc:
                return None, error(request, 403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {exc}")
            if claims.get("session_id") not in self.sessions:
                return None, error(
                    request, 403, "session_not_found", "Session from session_id claim in JWT does not exist"
                )
            return claims, None

        @app.post("/auth/v1/token")
        async def token(request: Request) -> Response:
            refused = gateway_refuses(request)
            if refused:
                return refused
            grant_type = request.query_params.get("grant_type")
            if grant_type != "password":
                return error(request, 400, "validation_failed", f"unsupported_grant_type: {grant_type}")
            body = await request.json()
            user = self.users.get(str(body.get("email", "")).lower())
            if user is None or not secrets.compare_digest(user.password, str(body.get("password", ""))):
                return error(request, 400, "invalid_credentials", "Invalid login credentials")
            if not user.confirmed:
                return error(request, 400, "email_not_confirmed", "Email not confirmed")
            session_id = str(uuid.uuid4())
            self.sessions[session_id] = user.id
            now = int(time.time())
            access = jwt.encode(
                {
                    "iss": f"{self.url}/auth/v1",
                    "sub": user.id,
                    "aud": "authenticated",
                    "exp": now + ACCESS_TOKEN_SECONDS,
                    "iat": now,
                    "email": user.email,
                    "phone": "",
                    "app_metadata": {"provider": "email", "providers": ["email"]},
                    "user_metadata": {},
                    "role": "authenticated",
                    "aal": "aal1",
                    "amr": [{"method": "password", "timestamp": now}],
                    "session_id": session_id,
                    "is_anonymous": False,
                },
                self.jwt_secret,
                algorithm="HS256",
            )
            signed_in = datetime.now(UTC).isoformat()
            return JSONResponse(
                {
                    "access_token": access,
                    "token_type": "bearer",
                    "expires_in": ACCESS_TOKEN_SECONDS,
                    "expires_at": now + ACCESS_TOKEN_SECONDS,
                    "refresh_token": secrets.token_urlsafe(9),
                    "user": user.as_json(signed_in),
                    "weak_password": None,
                }
            )

        @app.get("/auth/v1/user")
        async def user(request: Request) -> Response:
            refused = gateway_refuses(request)
            if refused:
                return refused
            claims, failed = claims_of(request)
            if failed:
                return failed
            assert claims is not None
            found = next((u for u in self.users.values() if u.id == claims["sub"]), None)
            if found is None:
                return error(request, 403, "user_not_found", "User from sub claim in JWT does not exist")
            return JSONResponse(found.as_json())

        @app.post("/auth/v1/logout")
        async def logout(request: Request) -> Response:
            refused = gateway_refuses(request)
            if refused:
                return refused
            claims, failed = claims_of(request)
            if failed:
                return failed
            assert claims is not None
            scope = request.query_params.get("scope", "global")
            if scope not in ("global", "local", "others"):
                return error(request, 400, "validation_failed", "Unsupported logout scope")
            mine = claims["session_id"]
            for session_id, user_id in list(self.sessions.items()):
                if user_id != claims["sub"]:
                    continue
                if (
                    scope == "global"
                    or (scope == "local" and session_id == mine)
                    or (scope == "others" and session_id != mine)
                ):
                    del self.sessions[session_id]
            return Response(status_code=204)

        return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gotrue_server() -> Iterator[GoTrueServer]:
    """Serve a fresh test project on a free local port (uvicorn in a thread) until the block ends."""
    state = GoTrueServer()
    port = _free_port()
    state.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(state.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gotrue-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the GoTrue test server did not start")
        time.sleep(0.02)  # uvicorn exposes no start event to await
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
