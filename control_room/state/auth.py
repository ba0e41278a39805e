"""Signing in: the login form, and the redirect to the page the person wanted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room import routes
from control_room.config import get_settings
from control_room.db.connection import get_pool
from control_room.services import users
from control_room.services.errors import Unauthorized
from control_room.state.base import SessionState, problem_text, safe_next_path
from control_room.state.events import background


class LoginState(SessionState):
    """The sign-in form. The password only passes through the submit event; it is never stored."""

    error: rx.Field[str] = rx.field("")
    is_signing_in: rx.Field[bool] = rx.field(False)
    supabase: rx.Field[bool] = rx.field(False)

    @background
    async def open_login(self) -> AsyncIterator[Any]:
        """Already signed in: go on to the app; otherwise show the form."""
        async with self:
            self.error = ""
            self.supabase = bool(get_settings().supabase_url)
            wanted = safe_next_path(self.router.url.query_parameters.get("next"))
        if await self.signed_in() is not None:
            yield rx.redirect(wanted)

    @background
    async def sign_in(self, form: dict[str, Any]) -> AsyncIterator[Any]:
        """Check the credentials, start a session, store its token in the cookie, go on."""
        async with self:
            if self.is_signing_in:
                return
            self.is_signing_in = True
            self.error = ""
            wanted = safe_next_path(self.router.url.query_parameters.get("next"))
            user_agent = self.router.headers.user_agent
            client = self.router.session.client_ip
        try:
            pool = await get_pool()
            async with pool.connection() as conn:
                session = await users.sign_in(
                    conn,
                    email=str(form.get("email", "")),
                    password=str(form.get("password", "")),
                    user_agent=user_agent,
                    client=client,
                )
        except (Unauthorized, users.SignInThrottled) as exc:
            async with self:
                self.error = exc.message
                self.is_signing_in = False
            return
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
                self.is_signing_in = False
            return
        async with self:
            self.session_token = session.token
            self.is_signing_in = False
        if await self.signed_in() is None:  # loads memberships for the shell
            async with self:
                self.error = "signed in, but the session could not be read back; try again"
            return
        yield rx.redirect(wanted if wanted != routes.LOGIN else routes.RUNS)
