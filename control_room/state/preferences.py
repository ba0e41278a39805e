"""The signed-in user's notification preferences in the selected project's org (only they can change them)."""

from __future__ import annotations

import uuid
from datetime import time

import reflex as rx
from psycopg import AsyncConnection

from control_room.db.tables import NotificationPreferences
from control_room.services import alerts, notifications
from control_room.services.errors import Invalid
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, handler, setter

CHANNELS = ("email", "in_app", "webhook")
SEVERITIES = ("info", "warning", "critical")
# The list preferences whose values checkboxes and switches toggle one at a time.
LISTS = ("channels", "subscribed_jobs", "muted_jobs", "subscribed_projects")


def _clock(value: time | None) -> str:
    return value.strftime("%H:%M") if value else ""


def _time(text: str, field: str) -> str | None:
    if not text:
        return None
    try:
        return time.fromisoformat(text).strftime("%H:%M")
    except ValueError as exc:
        raise Invalid(f"{field.replace('_', ' ')} must be a time such as 22:00", field=field) from exc


class PreferencesState(SessionState):
    """Channels, minimum severity, quiet hours, digest, subscriptions and muted jobs."""

    channels: rx.Field[list[str]] = rx.field(default_factory=lambda: ["email", "in_app"])
    webhook_url: rx.Field[str] = rx.field("")
    min_severity: rx.Field[str] = rx.field("info")
    quiet_start: rx.Field[str] = rx.field("")
    quiet_end: rx.Field[str] = rx.field("")
    timezone: rx.Field[str] = rx.field("UTC")
    critical_overrides_quiet: rx.Field[bool] = rx.field(True)
    digest_info: rx.Field[bool] = rx.field(False)
    subscribed_jobs: rx.Field[list[str]] = rx.field(default_factory=list)
    subscribed_projects: rx.Field[list[str]] = rx.field(default_factory=list)
    muted_jobs: rx.Field[list[str]] = rx.field(default_factory=list)
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
            self._apply(prefs)
            self.jobs = sorted({*jobs, *self.subscribed_jobs, *self.muted_jobs})

        await self._read_shown(read, show, signed=signed)

    def _apply(self, row: NotificationPreferences) -> None:
        self.channels = list(row.channels)
        self.webhook_url = row.webhook_url or ""
        self.min_severity = row.min_severity
        self.quiet_start, self.quiet_end = _clock(row.quiet_start), _clock(row.quiet_end)
        self.timezone = row.timezone
        self.critical_overrides_quiet = row.critical_overrides_quiet
        self.digest_info = row.digest_info
        self.subscribed_jobs = list(row.subscribed_jobs)
        self.subscribed_projects = [str(p) for p in row.subscribed_projects]
        self.muted_jobs = list(row.muted_jobs)

    @handler
    def toggle(self, name: str, value: str, on: bool) -> None:
        """Check or uncheck one value of a list preference: a channel, a subscribed or muted job, a project."""
        if name not in LISTS or (name == "channels" and value not in CHANNELS):
            return
        values: list[str] = getattr(self, name)
        setattr(self, name, sorted({*values, value}) if on else [v for v in values if v != value])

    @handler
    def set_text(self, name: str, value: str) -> None:
        if name in ("webhook_url", "quiet_start", "quiet_end", "timezone", "min_severity"):
            setattr(self, name, value.strip()[:500])

    set_critical_overrides_quiet = setter("critical_overrides_quiet")
    set_digest_info = setter("digest_info")

    @background
    async def save(self) -> None:
        """Write the preferences as the user themself (the SQL refuses anyone else, admins included)."""
        async with self:
            if self.is_saving or not self._org_id:
                return
            self.is_saving = True
            org = uuid.UUID(self._org_id)
            try:
                quiet = (_time(self.quiet_start, "quiet_start"), _time(self.quiet_end, "quiet_end"))
                if (quiet[0] is None) != (quiet[1] is None):
                    raise Invalid("quiet hours need both a start and an end (or neither)", field="quiet_end")
                if "webhook" in self.channels and not self.webhook_url.startswith(("http://", "https://")):
                    raise Invalid("a personal webhook needs an http(s) URL", field="webhook_url")
                prefs = {
                    "channels": self.channels, "webhook_url": self.webhook_url or None,
                    "min_severity": self.min_severity, "quiet_start": quiet[0], "quiet_end": quiet[1],
                    "timezone": self.timezone or "UTC", "critical_overrides_quiet": self.critical_overrides_quiet,
                    "digest_info": self.digest_info, "subscribed_jobs": self.subscribed_jobs,
                    "subscribed_projects": self.subscribed_projects, "muted_jobs": self.muted_jobs,
                }  # fmt: skip
                problem = ""
            except Invalid as exc:
                problem = problem_text(exc)
        error, saved = problem, ""
        signed = await self.signed_in()
        if not problem and signed is not None:
            user = signed.principal.user_id
            try:
                async with as_user(signed.principal) as conn:
                    await notifications.put_preferences(conn, org_id=org, user_id=user, actor_id=user, prefs=prefs)
                saved = "Saved."
            except Exception as exc:
                error = problem_text(exc)
        async with self:
            self.is_saving, self.error, self.saved = False, error, saved
