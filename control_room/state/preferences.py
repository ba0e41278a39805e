"""The signed-in user's notification preferences in the selected project's org (only they can change them)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import time
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room.db.tables import NotificationPreferences
from control_room.services import alerts, notifications
from control_room.services.errors import Invalid
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler
from control_room.state.rows import PreferencesForm, with_field

CHANNELS = ("email", "in_app", "webhook")
SEVERITIES = ("info", "warning", "critical")
# The form's fields by how the page changes them: list values that checkboxes and switches toggle one at a
# time, texts typed or chosen, and flags checked.
LISTS = ("channels", "subscribed_jobs", "muted_jobs", "subscribed_projects")
TEXTS = ("webhook_url", "quiet_start", "quiet_end", "timezone", "min_severity")
FLAGS = ("critical_overrides_quiet", "digest_info")


def _clock(value: time | None) -> str:
    return value.strftime("%H:%M") if value else ""


def _time(text: str, field: str) -> str | None:
    if not text:
        return None
    try:
        return time.fromisoformat(text).strftime("%H:%M")
    except ValueError as exc:
        raise Invalid(f"{field.replace('_', ' ')} must be a time such as 22:00", field=field) from exc


def preferences_form(row: NotificationPreferences) -> PreferencesForm:
    """The form showing a user's stored preferences."""
    return PreferencesForm(
        channels=list(row.channels), webhook_url=row.webhook_url or "", min_severity=row.min_severity,
        quiet_start=_clock(row.quiet_start), quiet_end=_clock(row.quiet_end), timezone=row.timezone,
        critical_overrides_quiet=row.critical_overrides_quiet, digest_info=row.digest_info,
        subscribed_jobs=list(row.subscribed_jobs), subscribed_projects=[str(p) for p in row.subscribed_projects],
        muted_jobs=list(row.muted_jobs),
    )  # fmt: skip


def written_preferences(form: PreferencesForm) -> dict[str, Any]:
    """The preferences to write, as the SQL function takes them; Invalid when the quiet hours or the personal
    webhook are not usable."""
    quiet = (_time(form.quiet_start, "quiet_start"), _time(form.quiet_end, "quiet_end"))
    if (quiet[0] is None) != (quiet[1] is None):
        raise Invalid("quiet hours need both a start and an end (or neither)", field="quiet_end")
    if "webhook" in form.channels and not form.webhook_url.startswith(("http://", "https://")):
        raise Invalid("a personal webhook needs an http(s) URL", field="webhook_url")
    return dataclasses.asdict(form) | {
        "webhook_url": form.webhook_url or None, "quiet_start": quiet[0], "quiet_end": quiet[1],
        "timezone": form.timezone or "UTC",
    }  # fmt: skip


class PreferencesState(SessionState):
    """Channels, minimum severity, quiet hours, digest, subscriptions and muted jobs."""

    form: rx.Field[PreferencesForm] = rx.field(default_factory=PreferencesForm)
    jobs: rx.Field[list[str]] = rx.field(default_factory=list)
    error: rx.Field[str] = rx.field("")
    saved: rx.Field[str] = rx.field("")
    is_saving: rx.Field[bool] = rx.field(False)

    _org_id: str = ""

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        async def read(conn: AsyncConnection, signed: SignedIn) -> tuple[uuid.UUID, NotificationPreferences, list[str]]:
            assert signed.project_id is not None  # _read_as_user reads only for a user with a project
            org = await alerts.project_org(conn, signed.project_id)
            row = await notifications.get_preferences(conn, org_id=org, user_id=signed.principal.user_id)
            jobs = await notifications.known_jobs(conn, org_id=org)
            return org, row or notifications.default_preferences(org, signed.principal.user_id), jobs

        def show(found: tuple[uuid.UUID, NotificationPreferences, list[str]]) -> None:
            org, prefs, jobs = found
            self._org_id = str(org)
            self.saved = ""
            self.form = preferences_form(prefs)
            self.jobs = sorted({*jobs, *self.form.subscribed_jobs, *self.form.muted_jobs})

        await self._read_shown(read, show, signed=signed)

    def _change(self, name: str, value: Any) -> None:
        self.form = with_field(self.form, name, value)

    @handler
    def toggle(self, name: str, value: str, on: bool) -> None:
        """Check or uncheck one value of a list preference: a channel, a subscribed or muted job, a project."""
        if name not in LISTS or (name == "channels" and value not in CHANNELS):
            return
        values: list[str] = getattr(self.form, name)
        self._change(name, sorted({*values, value}) if on else [v for v in values if v != value])

    @handler
    def set_text(self, name: str, value: str) -> None:
        if name in TEXTS:
            self._change(name, value.strip()[:500])

    @handler
    def set_flag(self, name: str, on: bool) -> None:
        if name in FLAGS:
            self._change(name, bool(on))

    @background
    @exclusive("is_saving")
    async def save(self) -> None:
        """Write the preferences as the user themself (the SQL refuses anyone else, admins included)."""
        async with self:
            if not self._org_id:
                return
            org, form = uuid.UUID(self._org_id), self.form
        error, saved = "", ""
        signed = await self.signed_in()
        try:
            prefs = written_preferences(form)
            if signed is not None:
                user = signed.principal.user_id
                async with as_user(signed.principal) as conn:
                    await notifications.put_preferences(conn, org_id=org, user_id=user, actor_id=user, prefs=prefs)
                saved = "Saved."
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            self.error, self.saved = error, saved
