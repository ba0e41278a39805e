"""The job page's main state: the template, its versions, the current version's DAG and params schema,
its schedules and latest runs (refreshed live), the caller's role on it, and archive/restore."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import plotly.graph_objects as go
import reflex as rx
from psycopg import AsyncConnection

from control_room.components.job_figures import version_dag_figure
from control_room.services import job_editing, jobs, runs
from control_room.services.errors import NotFound
from control_room.state import formatting
from control_room.state.base import ROLE_RANK, SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, page_id, page_url
from control_room.state.job.rows import job_header, schedule_row, version_row
from control_room.state.rows import JobHeader, RunRow, ScheduleRow, VersionRow
from control_room.state.runs import run_row

T = TypeVar("T")
TABS = ("overview", "runs", "versions", "schedules", "backfills")
RECENT_RUNS = 20

log = logging.getLogger(__name__)


class JobState(SessionState):
    """One job template's page."""

    header: rx.Field[JobHeader] = rx.field(default_factory=JobHeader)
    versions: rx.Field[list[VersionRow]] = rx.field(default_factory=list)
    schedules: rx.Field[list[ScheduleRow]] = rx.field(default_factory=list)
    recent_runs: rx.Field[list[RunRow]] = rx.field(default_factory=list)
    dag: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    params_schema: rx.Field[str] = rx.field("{}")
    tab: rx.Field[str] = rx.field("overview")
    job_role: rx.Field[str] = rx.field("")
    not_found: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")
    is_acting: rx.Field[bool] = rx.field(False)

    _shown: str = ""
    # The job being opened (from the address when the page loaded). Later refreshes compare with this, not
    # with the router's var: an event still in flight from the page before (a ticker of the jobs list) can
    # carry that page's address, and the open job's load then dropped its result and spun forever.
    _opening: str = ""
    _refreshing: bool = False

    @rx.var
    def can_operate_job(self) -> bool:
        """Operators and admins run, fire and backfill."""
        return ROLE_RANK.get(self.job_role, 0) >= ROLE_RANK["operator"] and not self.header.archived

    @rx.var
    def can_admin_job(self) -> bool:
        """Admins edit the template and its schedules, archive and restore."""
        return self.job_role == "admin"

    async def viewer(self) -> tuple[SignedIn, uuid.UUID] | None:
        """Outside the lock: who is signed in and which job is on screen (None when either is missing)."""
        signed = await self.signed_in()
        async with self:
            job_id = page_id(self)
        return None if signed is None or job_id is None else (signed, job_id)

    async def acting(self) -> tuple[SignedIn, uuid.UUID]:
        """``viewer()`` for actions: NotFound (shown to the person) when nobody is signed in or no job is open."""
        found = await self.viewer()
        if found is None:
            raise NotFound("sign in and open a job first", field="template")
        return found

    async def read_job(self, work: Callable[[AsyncConnection, uuid.UUID], Awaitable[T]]) -> T | None:
        """``work(conn, job_id)`` as the signed-in user, in one transaction; None when nobody is signed in
        or no job is open (errors propagate)."""
        found = await self.viewer()
        if found is None:
            return None
        signed, job_id = found
        async with as_user(signed.principal) as conn:
            return await work(conn, job_id)

    async def read_job_showing(
        self, work: Callable[[AsyncConnection, uuid.UUID], Awaitable[T]], *, error: str
    ) -> T | None:
        """``read_job``, a failure shown in the state var ``error`` (and None returned) instead of raised."""
        try:
            return await self.read_job(work)
        except Exception as exc:
            async with self:
                setattr(self, error, problem_text(exc))
            return None

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        """Open the job: template, versions, DAG, params schema, schedules and latest runs."""
        async with self:
            job_id = page_id(self)
            self._opening = str(job_id) if job_id else ""
            if str(job_id) != self._shown:
                wanted = page_url(self).query_parameters.get("tab", "")
                self.tab = wanted if wanted in TABS else "overview"
                self.loaded = False
                self.header, self.versions, self.schedules, self.recent_runs = JobHeader(), [], [], []
        if job_id is None:
            async with self:
                self.not_found = "This is not a job id."
            return
        await self._refresh(signed, job_id)

    async def _refresh(self, signed: SignedIn, job_id: uuid.UUID) -> None:
        try:
            async with as_user(signed.principal) as conn:
                template = await jobs.get_template(conn, template_id=job_id)
                found, _ = await runs.list_runs_sorted(
                    conn,
                    query=runs.RunsQuery(project_id=template["project_id"], template_id=job_id),
                    limit=RECENT_RUNS,
                )
        except NotFound as exc:
            async with self:
                self.not_found, self.loaded = exc.message, True
            return
        except Exception as exc:
            log.exception("job %s: loading its page failed", job_id)
            async with self:
                self.error = problem_text(exc)
            return
        latest = template["versions"][0] if template["versions"] else None
        async with self:
            if self._opening != str(job_id):
                return
            self.header = job_header(template)
            self.versions = [version_row(v) for v in template["versions"]]
            self.schedules = [schedule_row(s) for s in template["schedule_list"]]
            self.recent_runs = [run_row(r) for r in found]
            if str(job_id) != self._shown or not self.loaded:
                self.dag = version_dag_figure(latest.tasks if latest else [])
                self.params_schema = formatting.pretty_json(latest.params_schema if latest else {})
            self.job_role = signed.role_on(template["project_id"])
            self.not_found = self.error = ""
            self._shown = str(job_id)
            self.loaded = True
            self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")

    @background
    async def tick(self, _now: str = "") -> None:
        """Live refresh (every few seconds while open): runs, schedules' next fires, new versions."""
        async with self:
            if self._refreshing or not self.loaded or self.not_found:
                return
            self._refreshing = True
            job_id = uuid.UUID(self._opening) if self._opening else None
        try:
            signed = await self.signed_in()
            if signed is not None and job_id is not None:
                await self._refresh(signed, job_id)
        finally:
            async with self:
                self._refreshing = False

    @handler
    def set_tab(self, tab: str) -> None:
        """Switch tab (overview, runs, versions, schedules, backfills)."""
        self.tab = tab if tab in TABS else "overview"

    @background
    @exclusive("is_acting")
    async def set_archived(self, archived: bool) -> AsyncIterator[Any]:
        """Archive the template (its schedules are disabled) or restore it (admins; checked in SQL)."""
        try:
            signed, job_id = await self.acting()
            async with as_user(signed.principal) as conn:
                await job_editing.set_archived(conn, template_id=job_id, archived=archived, by=signed.principal.email)
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        yield rx.toast.success("Job archived: its schedules are disabled" if archived else "Job restored")
        yield JobState.load
