"""Superset from the control room: push the selected saved dashboard (operators), and the embed page's guest
token, minted on the server for the signed-in user and refreshed before it expires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import reflex as rx

from control_room import routes
from control_room.config import get_settings
from control_room.services import superset
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, page_url
from control_room.state.rows import SupersetEmbed

SAVED_PREFIX = "saved:"
# Guest tokens live 300 s (deploy/superset/superset_config.py): a fresh one well before.
REFRESH_MS = 240_000


def superset_enabled() -> bool:
    """Whether a Superset is configured (its URL and the service account's password)."""
    settings = get_settings()
    return bool(settings.superset_url and settings.superset_password)


def embed_path(slug: str) -> str:
    """The embed page of a saved dashboard."""
    return f"{routes.SUPERSET_EMBED}?{urlencode({'dashboard': slug})}"


class SupersetState(SessionState):
    """Push results and the embed: the embedded dashboard's id, Superset's address and the current guest token."""

    enabled: rx.Field[bool] = rx.field(default_factory=superset_enabled)
    pushing: rx.Field[bool] = rx.field(False)
    push_notice: rx.Field[str] = rx.field("")
    push_error: rx.Field[str] = rx.field("")
    embed: rx.Field[SupersetEmbed] = rx.field(default_factory=SupersetEmbed)
    error: rx.Field[str] = rx.field("")

    @signed_in_event
    @exclusive("pushing")
    async def push(self, signed: SignedIn, selected: str) -> AsyncIterator[Any]:
        """Push the selected saved dashboard to Superset, then open it embedded."""
        if signed.project_id is None:
            return
        async with self:
            self.push_notice, self.push_error = "", ""
        slug = selected.removeprefix(SAVED_PREFIX)
        try:
            if not selected.startswith(SAVED_PREFIX):
                raise superset.SupersetUnavailable("save the dashboard first: templates are pushed as saved dashboards")
            async with as_user(signed.principal) as conn:
                pushed = await superset.push_dashboard(conn, project_id=signed.project_id, slug=slug)
        except Exception as exc:
            async with self:
                self.push_error = problem_text(exc)
            return
        left_out = f"; left out: {', '.join(pushed['skipped'])}" if pushed["skipped"] else ""
        async with self:
            self.push_notice = f"Pushed {slug} to Superset ({len(pushed['charts'])} charts{left_out})."
        yield rx.redirect(embed_path(slug))

    @signed_in_event
    async def open_embed(self, signed: SignedIn) -> None:
        """Mint a guest token for ``?dashboard=`` as the signed-in user (their row filters included)."""
        async with self:
            slug = page_url(self).query_parameters.get("dashboard", "") or self.embed.slug
        found: dict[str, Any] = {}
        error = ""
        if not superset_enabled():
            error = "Superset is not configured: set LAKEHOUSE_SUPERSET_URL and LAKEHOUSE_SUPERSET_PASSWORD."
        elif not slug or signed.project_id is None:
            error = "Choose a saved dashboard on the Dashboards page and push it to Superset first."
        else:
            try:
                async with as_user(signed.principal) as conn:
                    found = await superset.guest_token(conn, project_id=signed.project_id, slug=slug,
                                                       email=signed.principal.email)  # fmt: skip
            except Exception as exc:
                error = problem_text(exc)
        count = len(found.get("rls", []))
        rls_note = (f"{count} row-level-security clause(s) from your access policies apply." if count
                    else "No access policy restricts what you see here.") if found else ""  # fmt: skip
        async with self:
            self.error = error
            self.embed = SupersetEmbed(slug, str(found.get("embedded_uuid", "")), str(found.get("superset_url", "")),
                                       str(found.get("token", "")), rls_note)  # fmt: skip

    @background
    async def refresh_token(self, _tick: str = "") -> AsyncIterator[Any]:
        """A fresh guest token before the current one expires."""
        yield SupersetState.open_embed
