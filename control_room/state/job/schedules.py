"""Schedules of the job page: the editor (admins) with validation as you type and the next 10 fires in the
schedule's zone and the viewer's; enable/disable (admins), pause/resume and "fire now" (operators); one
schedule's past fires as a calendar strip coloured by outcome."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import reflex as rx

from control_room.components.job_figures import fire_strip_figure
from control_room.services import job_editing, jobs, schedules
from control_room.services.errors import Invalid, ServiceError
from control_room.state import formatting
from control_room.state.base import ALL, SignedIn, as_user, problem_text
from control_room.state.events import background, exclusive, handler, setter
from control_room.state.job.detail import JobState
from control_room.state.job.rows import fire_row
from control_room.state.rows import FireRow, PreviewRow

PREVIEW_COUNT = 10
FIRES_SHOWN = 60
# The editor's inputs: all text, as typed (numbers are checked when read).
DRAFT_FIELDS = ("name", "environment", "cron", "timezone", "params", "catchup", "catchup_limit", "overlap",
                "jitter_s", "misfire_grace_s", "description")  # fmt: skip
NUMBER_FIELDS = ("catchup_limit", "jitter_s", "misfire_grace_s")
# A schedule's switches: the service call that sets one (its value passed by the switch's name), and the
# notices when it is turned on and off.
SWITCHES: dict[str, tuple[Callable[..., Awaitable[Any]], str, str]] = {
    "enabled": (job_editing.set_schedule_enabled, "Schedule enabled", "Schedule disabled"),
    "paused": (schedules.set_paused, "Schedule paused", "Schedule resumed"),
}


def draft_of(values: dict[str, str], enabled: bool) -> job_editing.ScheduleDraft:
    """The editor's texts as a draft; Invalid naming the field that does not read."""
    numbers: dict[str, int] = {}
    for name in NUMBER_FIELDS:
        try:
            numbers[name] = int(values.get(name, "").strip())
        except ValueError as exc:
            raise Invalid("must be a whole number", field=name) from exc
    try:
        params = json.loads(values.get("params") or "{}")
    except json.JSONDecodeError as exc:
        raise Invalid(f"not valid JSON: {exc.msg}", field="params") from exc
    if not isinstance(params, dict):
        raise Invalid("must be a JSON object", field="params")
    return job_editing.ScheduleDraft(
        name=values.get("name", "").strip(), environment=values.get("environment", "dev"),
        cron=values.get("cron", "").strip(), timezone=values.get("timezone", "").strip() or "UTC", params=params,
        enabled=enabled, catchup=values.get("catchup", "latest"), overlap=values.get("overlap", "allow"),
        description=values.get("description", ""), **numbers,
    )  # fmt: skip


def preview_rows(cron: str, timezone: str, viewer_zone: str, now: datetime) -> list[PreviewRow]:
    """The next fires as rows (empty when the cron or zone does not read)."""
    try:
        fires = job_editing.preview_fires(cron, timezone, viewer_zone=viewer_zone, now=now, count=PREVIEW_COUNT)
    except Invalid:
        return []
    return [PreviewRow(f"{a:%a %Y-%m-%d %H:%M} {a.tzname()}", f"{b:%a %Y-%m-%d %H:%M} {b.tzname()}") for a, b in fires]


class ScheduleState(JobState):
    """The schedule editor, the selected schedule's fires, and the schedule actions."""

    editor_open: rx.Field[bool] = rx.field(False)
    editing_id: rx.Field[str] = rx.field("")
    draft: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    draft_enabled: rx.Field[bool] = rx.field(True)
    draft_error: rx.Field[str] = rx.field("")
    draft_field: rx.Field[str] = rx.field("")
    preview: rx.Field[list[PreviewRow]] = rx.field(default_factory=list)
    viewer_zone: rx.Field[str] = rx.field("UTC")
    is_saving: rx.Field[bool] = rx.field(False)
    selected_schedule: rx.Field[str] = rx.field("")
    selected_name: rx.Field[str] = rx.field("")
    fires: rx.Field[list[FireRow]] = rx.field(default_factory=list)
    fire_strip: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    selected_preview: rx.Field[list[PreviewRow]] = rx.field(default_factory=list)

    _schema: dict[str, Any] = {}
    _template: str = ""
    _project: str = ""

    @handler
    def set_viewer_zone(self, zone: Any) -> None:
        """The browser's time zone (Intl API), for the second column of previews."""
        self.viewer_zone = str(zone or "UTC")[:64]

    def _check(self) -> None:
        self.preview = preview_rows(
            self.draft.get("cron", ""), self.draft.get("timezone", "UTC"), self.viewer_zone, datetime.now(UTC)
        )
        try:
            draft = draft_of(self.draft, self.draft_enabled)
            job_editing.check_schedule(draft, project=self._project, template=self._template,
                                       params_schema=self._schema)  # fmt: skip
        except ServiceError as exc:
            self.draft_error, self.draft_field = exc.message, exc.field or ""
            return
        self.draft_error = self.draft_field = ""

    async def _context(self, signed: SignedIn, job_id: uuid.UUID) -> tuple[dict[str, Any], str, str]:
        async with as_user(signed.principal) as conn:
            template = await jobs.get_template(conn, template_id=job_id)
            schema = await jobs.version_schema(conn, template_id=job_id, version=None)
        return schema, template["name"], template["project"]

    @background
    async def open_editor(self, schedule_id: str = "") -> AsyncIterator[Any]:
        """Open the editor on a schedule, or on a new one (every minute in UTC, the template's defaults)."""
        async with self:
            environment = self.environment
        try:
            signed, job_id = await self.acting()
            schema, template, project = await self._context(signed, job_id)
            existing = None
            if schedule_id:
                async with as_user(signed.principal) as conn:
                    existing = await schedules.get_schedule(
                        conn, schedule_id=uuid.UUID(schedule_id), now=datetime.now(UTC), upcoming=1, fires=0
                    )
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        if existing is not None:
            values = {name: formatting.scalar(existing[name]) for name in DRAFT_FIELDS if name != "params"}
            values["params"] = json.dumps(existing["params"], indent=2)
            enabled = bool(existing["enabled"])
        else:
            values = {"name": f"{template}-schedule", "environment": environment if environment != ALL else "dev",
                      "cron": "* * * * *", "timezone": "UTC", "params": "{}", "catchup": "latest",
                      "catchup_limit": "10", "overlap": "skip", "jitter_s": "0", "misfire_grace_s": "60",
                      "description": ""}  # fmt: skip
            enabled = True
        async with self:
            self._schema, self._template, self._project = schema, template, project
            self.editing_id = schedule_id
            self.draft, self.draft_enabled = values, enabled
            self._check()
            self.editor_open = True

    set_editor_open = setter("editor_open")

    @handler
    def set_draft(self, name: str, value: str) -> None:
        """One input changed: check the draft again and redraw the preview."""
        if name in DRAFT_FIELDS:
            self.draft = {**self.draft, name: value}
            self._check()

    @handler
    def set_draft_enabled(self, value: bool) -> None:
        """Enabled or disabled."""
        self.draft_enabled = bool(value)

    @background
    @exclusive("is_saving")
    async def save(self) -> AsyncIterator[Any]:
        """Save the schedule (admins; checked in SQL); the scheduler plans it from its next tick."""
        async with self:
            values, enabled, editing = dict(self.draft), self.draft_enabled, self.editing_id
            template, project = self._template, self._project
        try:
            signed, job_id = await self.acting()
            draft = draft_of(values, enabled)
            async with as_user(signed.principal) as conn:
                await job_editing.save_schedule(
                    conn, template_id=job_id, template=template, project=project,
                    schedule_id=uuid.UUID(editing) if editing else None, draft=draft, by=signed.principal.email,
                )  # fmt: skip
        except Exception as exc:
            async with self:
                self.draft_error = problem_text(exc)
                self.draft_field = exc.field or "" if isinstance(exc, ServiceError) else ""
            return
        async with self:
            self.editor_open = False
        yield rx.toast.success(f"Schedule {values.get('name', '')} saved")
        yield JobState.load

    async def _act(self, work: Any, done: str) -> AsyncIterator[Any]:
        signed = await self.signed_in()
        if signed is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                detail = await work(conn, signed.principal.email)
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        yield rx.toast.success(done.format(**(detail or {})))
        yield JobState.load

    @background
    async def switch(self, schedule_id: str, name: str, on: bool) -> AsyncIterator[Any]:
        """Turn one of a schedule's SWITCHES on or off: enabled (admins) or paused (operators)."""
        if name not in SWITCHES:
            return
        change, done_on, done_off = SWITCHES[name]

        async def work(conn: Any, by: str) -> None:
            await change(conn, schedule_id=uuid.UUID(schedule_id), by=by, **{name: on})

        async for event in self._act(work, done_on if on else done_off):
            yield event

    @background
    async def fire_now(self, schedule_id: str) -> AsyncIterator[Any]:
        """Fire a schedule at once (operators): its params plus the interval ending now."""

        async def work(conn: Any, by: str) -> dict[str, Any]:
            fired = await schedules.fire_now(conn, schedule_id=uuid.UUID(schedule_id), now=datetime.now(UTC), by=by)
            return {"status": fired["status"], "run": formatting.short_id(fired["run_id"] or "")}

        async for event in self._act(work, "Fired: {status} {run}"):
            yield event
        yield ScheduleState.select(schedule_id)

    @background
    async def select(self, schedule_id: str) -> AsyncIterator[Any]:
        """Show one schedule's past fires (calendar strip and list) and its next fires."""
        try:
            wanted = uuid.UUID(schedule_id)
            schedule = await self.read_job(
                lambda conn, _: schedules.get_schedule(
                    conn, schedule_id=wanted, now=datetime.now(UTC), fires=FIRES_SHOWN
                )
            )
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        if schedule is None:
            return
        async with self:
            self.selected_schedule, self.selected_name = schedule_id, schedule["name"]
            self.fires = [fire_row(f) for f in schedule["fires"]]
            self.fire_strip = fire_strip_figure(schedule["fires"])
            self.selected_preview = preview_rows(
                schedule["cron"], schedule["timezone"], self.viewer_zone, datetime.now(UTC)
            )
