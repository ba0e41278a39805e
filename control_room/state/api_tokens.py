"""The signed-in person's API tokens (`lhu_…`): create with an expiry and a role ceiling (the token is
shown once), list with when each was last used, revoke. Same services as `lakehouse tokens` and /tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import reflex as rx

from control_room.db.connection import get_pool
from control_room.services import auth
from control_room.state import formatting
from control_room.state.base import SessionState, SignedIn, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, setter
from control_room.state.rows import ApiTokenRow

# The choices of the create form: lifetime in days ("never": no expiry) and the role ceiling.
LIFETIMES = {"7": "7 days", "30": "30 days", "90": "90 days", "365": "1 year", "never": "Never expires"}
NO_CEILING = "none"
CEILINGS = {NO_CEILING: "My roles (no ceiling)", "viewer": "Viewer", "operator": "Operator", "admin": "Admin"}


def api_token_row(token: auth.ApiTokenPublic, *, now: datetime) -> ApiTokenRow:
    """The table row of a token as ``auth.list_api_tokens`` returns it."""
    if token.revoked_at is not None:
        status = "revoked"
    elif token.expires_at is not None and token.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    used = (now - token.last_used_at).total_seconds() if token.last_used_at else None
    return ApiTokenRow(
        name=token.name,
        prefix=f"{token.token_prefix}…",
        ceiling=token.role_ceiling or "",
        created=formatting.timestamp(token.created_at),
        expires=formatting.timestamp(token.expires_at) if token.expires_at else "never",
        last_used=formatting.ago(used),
        status=status,
    )


class ApiTokensState(SessionState):
    """The API tokens page: the table, the create form, the token shown once, the revoke dialog."""

    rows: rx.Field[list[ApiTokenRow]] = rx.field(default_factory=list)
    loaded: rx.Field[bool] = rx.field(False)
    error: rx.Field[str] = rx.field("")
    form_error: rx.Field[str] = rx.field("")
    creating: rx.Field[bool] = rx.field(False)
    lifetime: rx.Field[str] = rx.field("90")
    ceiling: rx.Field[str] = rx.field(NO_CEILING)
    created_name: rx.Field[str] = rx.field("")
    created_token: rx.Field[str] = rx.field("")  # shown once, forgotten when the dialog closes
    revoke_target: rx.Field[str] = rx.field("")
    revoke_open: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")

    @signed_in_event
    async def load(self, _signed: SignedIn) -> None:
        """List the person's tokens."""
        await self._refresh()

    @background
    async def tick(self, _now: str = "") -> None:
        """Live refresh of last-used times while the page is open."""
        await self._refresh()

    async def _refresh(self) -> None:
        signed = await self.signed_in()
        if signed is None:
            return
        try:
            pool = await get_pool()
            async with pool.connection() as conn:
                tokens = await auth.list_api_tokens(conn, user_id=signed.principal.user_id)
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        now = datetime.now(UTC)
        async with self:
            self.rows = [api_token_row(token, now=now) for token in tokens]
            self.error = ""
            self.loaded = True
            self.updated_at = now.strftime("%H:%M:%S")

    @handler
    def set_lifetime(self, value: str) -> None:
        """The create form's lifetime select."""
        self.lifetime = value if value in LIFETIMES else "90"

    @handler
    def set_ceiling(self, value: str) -> None:
        """The create form's role ceiling select."""
        self.ceiling = value if value in CEILINGS else NO_CEILING

    @signed_in_event
    @exclusive("creating")
    async def create(self, signed: SignedIn, form: dict[str, Any]) -> AsyncIterator[Any]:
        """Create a token; its secret goes to this page once, in the dialog."""
        async with self:
            self.form_error = ""
            lifetime, ceiling = self.lifetime, self.ceiling
        name = str(form.get("name", "")).strip()
        try:
            pool = await get_pool()
            async with pool.connection() as conn:
                token = await auth.create_api_token(
                    conn,
                    user_id=signed.principal.user_id,
                    name=name,
                    expires_in_days=None if lifetime == "never" else float(lifetime),
                    role_ceiling=None if ceiling == NO_CEILING else ceiling,
                )
        except Exception as exc:
            async with self:
                self.form_error = problem_text(exc)
            return
        async with self:
            self.created_name, self.created_token = name, token
        yield rx.set_value("token-name", "")
        await self._refresh()

    @handler
    def forget_created(self, _open: bool = False) -> None:
        """The dialog closed: the token is gone from the page (only its hash is stored)."""
        self.created_name = self.created_token = ""

    @handler
    def ask_revoke(self, name: str) -> None:
        """Open the confirmation for revoking a token."""
        self.revoke_target, self.revoke_open = name, True

    set_revoke_open = setter("revoke_open")

    @signed_in_event
    async def revoke(self, signed: SignedIn) -> None:
        """Revoke the confirmed token: its next request gets 401."""
        async with self:
            name, self.revoke_open = self.revoke_target, False
        try:
            pool = await get_pool()
            async with pool.connection() as conn:
                await auth.revoke_api_token(conn, user_id=signed.principal.user_id, name=name)
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        await self._refresh()
