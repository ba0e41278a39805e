"""Signing in: what the sign-in page shows (the last failure, where to go next); the form itself posts
to control_room.api.web_sessions, which sets the HttpOnly session cookie the browser then sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room import routes, session_cookie
from control_room.config import get_settings
from control_room.state.base import SessionState
from control_room.state.events import background, page_url


class LoginState(SessionState):
    """The sign-in page. The password goes from the form to the server in the POST body only."""

    error: rx.Field[str] = rx.field("")
    next_path: rx.Field[str] = rx.field(routes.RUNS)
    supabase: rx.Field[bool] = rx.field(False)

    @background
    async def open_login(self) -> AsyncIterator[Any]:
        """Already signed in: go on to the app; otherwise show the form (with why the last try failed)."""
        settings = get_settings()
        async with self:
            self.supabase = bool(settings.supabase_url)
            self.next_path = routes.safe_next_path(page_url(self).query_parameters.get("next"))
            self.error = session_cookie.sign_in_error(self.router.headers.cookie, settings)
            wanted = self.next_path
        if await self.signed_in() is not None:
            yield rx.redirect(wanted)
