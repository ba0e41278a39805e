"""Backfills of the job page: a date range and a step (or a schedule's cron), concurrency and order make one
backfill (operators); each shows its progress and is cancelled as a group."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import reflex as rx

from control_room.services import backfills
from control_room.services.errors import Invalid
from control_room.state.base import ALL, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, setter
from control_room.state.job.detail import JobState
from control_room.state.job.rows import backfill_row
from control_room.state.rows import NO_SCHEDULE, BackfillForm, BackfillRow, with_field


def parse_instant(text: str, field: str) -> datetime:
    """A date (``2026-11-01``) or date and time (``2026-11-01T06:00``) read in UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise Invalid("give a date such as 2026-11-01 or 2026-11-01T06:00 (UTC)", field=field) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_params(text: str) -> dict[str, Any]:
    """The params every run of the backfill gets (a JSON object; the interval params are added to it)."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise Invalid(f"not valid JSON: {exc.msg}", field="params") from exc
    if not isinstance(value, dict):
        raise Invalid("must be a JSON object", field="params")
    return value


class BackfillState(JobState):
    """The backfill form and the job's backfills."""

    backfill_open: rx.Field[bool] = rx.field(False)
    form: rx.Field[BackfillForm] = rx.field(default_factory=BackfillForm)
    bf_error: rx.Field[str] = rx.field("")
    is_creating: rx.Field[bool] = rx.field(False)
    backfill_rows: rx.Field[list[BackfillRow]] = rx.field(default_factory=list)

    @handler
    def open_backfill(self) -> None:
        """Open the form on the last 5 days, one run per day."""
        today = datetime.now(UTC).date()
        self.form = dataclasses.replace(
            self.form, start=(today - timedelta(days=5)).isoformat(), end=today.isoformat(), step="1d",
            schedule=NO_SCHEDULE, environment=self.environment if self.environment != ALL else "dev",
        )  # fmt: skip
        self.bf_error = ""
        self.backfill_open = True

    set_backfill_open = setter("backfill_open")

    @handler
    def set_field(self, name: str, value: str) -> None:
        """One input of the form changed."""
        self.form, self.bf_error = with_field(self.form, name, value), ""

    @background
    async def load_backfills(self, _now: str = "") -> None:
        """The job's backfills, newest first (refreshed live while the page is open)."""
        found = await self.read_job_showing(
            lambda conn, job_id: backfills.list_backfills(conn, template_id=job_id), error="bf_error"
        )
        if found is None:
            return
        async with self:
            self.backfill_rows = [backfill_row(b) for b in found]

    @background
    @exclusive("is_creating")
    async def create(self) -> AsyncIterator[Any]:
        """Create the backfill; its first runs start at once, the rest as earlier ones end."""
        async with self:
            form = dataclasses.replace(self.form)  # a copy of its own, read after the lock is released

        async def work() -> dict[str, Any]:
            signed, job_id = await self.acting()
            try:
                limit = int(form.concurrency)
            except ValueError as exc:
                raise Invalid("must be a whole number", field="max_concurrency") from exc
            async with as_user(signed.principal) as conn:
                return await backfills.create_backfill(
                    conn, template_id=job_id, environment=form.environment,
                    start=parse_instant(form.start, "start"), end=parse_instant(form.end, "end"),
                    step=form.step.strip() or None,
                    schedule_id=None if form.schedule == NO_SCHEDULE else uuid.UUID(form.schedule),
                    max_concurrency=limit, run_order=form.order, params=parse_params(form.params),
                    requested_by=signed.principal.user_id, requested_by_name=signed.principal.email,
                )  # fmt: skip

        created = await self._dialog_sent(work, error="bf_error", dialog="backfill_open")
        if created is None:
            return
        yield rx.toast.success(f"Backfill of {created['total']} intervals started")
        yield JobState.set_tab("backfills")
        yield BackfillState.load_backfills

    @signed_in_event
    async def cancel(self, signed: SignedIn, backfill_id: str) -> AsyncIterator[Any]:
        """Cancel a backfill as a group: pending intervals never run, active runs are cancelled."""
        try:
            async with as_user(signed.principal) as conn:
                await backfills.cancel_backfill(conn, backfill_id=uuid.UUID(backfill_id), by=signed.principal.email)
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        yield rx.toast.success("Backfill cancelled")
        yield BackfillState.load_backfills
