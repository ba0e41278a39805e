"""The run page's state: opens a run, keeps it fresh (tick + LISTEN/NOTIFY), pages its events, cancel and retry.

What each part shows is built in its own module: header.py, tasks.py, timeline.py and events.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import reflex as rx

from control_room import routes
from control_room.components.layout import PRODUCT_NAME
from control_room.db import notify
from control_room.db.notify import EVENTS_CHANNEL
from control_room.services import artifacts, events, retention, runs
from control_room.services.errors import NotFound
from control_room.services.retry import is_transient_for_reads, retry_transaction
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, replace_address, signed_in_event
from control_room.state.events import background, exclusive, handler, page_id, page_url, setter
from control_room.state.rows import AttemptRow, EventRow, ParamRow, RunArtifactRow, RunHeader, TaskRow
from control_room.state.run_actions import rerun_event
from control_room.state.run_detail.events import (
    ARCHIVED_PAGE,
    EVENTS_PAGE,
    MAX_EVENTS_KEPT,
    SCROLL_LOG_TO_END,
    SCROLL_LOG_TO_START,
    archive_notice,
    archived_matches,
    event_row,
    level_or_default,
    min_level,
)
from control_room.state.run_detail.header import TERMINAL, param_rows, rerun_links, run_header
from control_room.state.run_detail.tasks import (
    artifact_rows,
    attempt_rows,
    flat_attempts,
    ordered_tasks,
    task_rows,
)
from control_room.state.run_detail.timeline import updated_figures
from control_room.storage import StorageError

WATCH_WAIT_SECONDS = 2.0
WATCH_IDLE_SECONDS = 6.0
# A busy run notifies many times a second. A pushed refresh comes at most this often after the one before (the
# events that arrive meanwhile come with it), and a running attempt's Gantt bar grows at most this often: each
# refresh sends the event tail and each figure is drawn again, which kept a loaded browser too busy to answer.
PUSH_REFRESH_SECONDS = 0.5
GANTT_GROW_SECONDS = 5.0
TABS = ("overview", "timeline", "artifacts")
TITLE_TICKS = 5
LOAD_RETRY_SECONDS = 0.5  # then 1 and 2 s (jittered): a page that opens late beats one that gives up


# What the browser shows in its address bar (path and query), for a load whose router may be stale.
CURRENT_ADDRESS = "window.location.pathname + window.location.search"


class RunDetailState(SessionState):
    """The run page; refreshed every second while open (run and tasks, then new events only)."""

    header: rx.Field[RunHeader] = rx.field(default_factory=RunHeader)
    params: rx.Field[list[ParamRow]] = rx.field(default_factory=list)
    reruns: rx.Field[list[ParamRow]] = rx.field(default_factory=list)  # short id -> page of each re-run
    rerun_task: rx.Field[str] = rx.field("")  # the task "Re-run from task…" starts at
    confirm_rerun_from: rx.Field[bool] = rx.field(False)
    tasks: rx.Field[list[TaskRow]] = rx.field(default_factory=list)
    attempts: rx.Field[list[AttemptRow]] = rx.field(default_factory=list)
    run_artifacts: rx.Field[list[RunArtifactRow]] = rx.field(default_factory=list)
    dag: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    gantt: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    events: rx.Field[list[EventRow]] = rx.field(default_factory=list)
    level: rx.Field[str] = rx.field("debug")
    search: rx.Field[str] = rx.field("")
    event_task: rx.Field[str] = rx.field("")  # the task (its id) the log is narrowed to; "" for all
    follow: rx.Field[bool] = rx.field(True)
    has_older: rx.Field[bool] = rx.field(False)
    # Event retention: the run's events moved to Parquet; shown (marked archived) when asked for.
    archive_notice: rx.Field[str] = rx.field("")
    archived_events: rx.Field[list[EventRow]] = rx.field(default_factory=list)
    archived_loaded: rx.Field[bool] = rx.field(False)
    archived_more: rx.Field[bool] = rx.field(False)
    is_loading_archive: rx.Field[bool] = rx.field(False)
    tab: rx.Field[str] = rx.field("overview")
    not_found: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    load_failed: rx.Field[bool] = rx.field(False)  # opening the run failed: its error shows, with Try again
    can_operate_run: rx.Field[bool] = rx.field(False)
    is_acting: rx.Field[bool] = rx.field(False)
    confirm_cancel: rx.Field[bool] = rx.field(False)

    _shown_run: str = ""
    _first_event_id: int = 0
    _last_event_id: int = 0
    _figure_signature: str = ""
    _gantt_at: float = 0.0  # when the Gantt was last built (monotonic)
    _refreshing: bool = False
    _refreshed_at: float = 0.0  # when the last refresh started (monotonic)
    _generation: int = 0
    _idle_ticks: int = 0
    _watching: bool = False
    _seen_at: float = 0.0
    _title_ticks: int = 0
    _address_task: str = ""  # the task whose panel is open (its key), for the address
    _address_attempt: int = 0
    _archived: bool = False  # the run's events and attempts were archived (retention)

    @rx.var
    def event_count_label(self) -> str:
        """How many events are loaded here (the newest ones)."""
        return f"{len(self.events):,} events shown" + (" · older available" if self.has_older else "")

    def _event_filters(self) -> dict[str, Any]:
        """The event log's filters as ``events.list_events`` takes them."""
        task = uuid.UUID(self.event_task) if self.event_task else None
        return {"min_level": min_level(self.level), "text": self.search or None, "task_id": task}

    def _address(self, run_id: str = "") -> str:
        """This view's address: tab, the event log's filters and the open task panel, so that a reload, a
        copied link or Back to this page shows the same view."""
        log_task = next((task.key for task in self.tasks if task.id == self.event_task), None)
        return routes.run_detail(
            run_id or self._shown_run,
            tab=self.tab if self.tab != "overview" else None,
            level=self.level if self.level != "debug" else None,
            q=self.search or None,
            log_task=log_task,
            task=self._address_task or None,
            attempt=self._address_attempt or None,
        )

    def _share_address(self) -> list[Any]:
        """Shows this view's address in the address bar (no navigation): a script, none before a run shows."""
        return [rx.call_script(replace_address(self._address()))] if self._shown_run else []

    @signed_in_event
    async def load(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Open the run of the page's address: header, tasks, figures, newest events and artifacts."""
        async with self:
            run_id = page_id(self)
            query = dict(page_url(self).query_parameters)
        if run_id is None:
            # The event came with another address than the browser shows (seen once right after a submit's
            # redirect, before loads read their own event's address): the address bar decides.
            yield rx.call_script(CURRENT_ADDRESS, callback=RunDetailState.open_address)
            return
        async for item in self._open(signed, run_id, query):
            yield item

    @signed_in_event
    async def open_address(self, signed: SignedIn, address: str) -> AsyncIterator[Any]:
        """Open the run named by the browser's own address (``/runs/<id>?tab=…``), given by the browser."""
        parts = urllib.parse.urlsplit(str(address))
        prefix, _, last = parts.path.rstrip("/").rpartition("/")
        if not prefix.endswith(routes.RUNS):  # the person has moved on to another page meanwhile
            return
        try:
            run_id = uuid.UUID(last)
        except ValueError:
            async with self:
                self._reset()
                self.not_found = "This is not a run id."
            return
        async for item in self._open(signed, run_id, dict(urllib.parse.parse_qsl(parts.query))):
            yield item

    async def _open(self, signed: SignedIn, run_id: uuid.UUID, query: dict[str, str]) -> AsyncIterator[Any]:
        async with self:
            wanted_tab, wanted_log_task = query.get("tab", ""), query.get("log_task", "")
            if str(run_id) != self._shown_run:
                self._reset()
            self.tab = wanted_tab if wanted_tab in TABS else "overview"
            # The event log's filters come from the address too (a shared link, a reload, Back).
            self.level = level_or_default(query.get("level", ""))
            self.search = query.get("q", "")[:200]
            self._title_ticks = 0
            self._generation += 1
            generation = self._generation
            filters = self._event_filters()
        try:
            opened = await self._read_run(signed, run_id, filters, wanted_log_task)
        except NotFound as exc:
            async with self:
                self.not_found = exc.message
                self.loaded = True
            return
        except Exception as exc:  # the page says what failed and offers to try again, instead of spinning on
            async with self:
                if generation == self._generation:
                    self.error = problem_text(exc)
                    self.load_failed = True
            return
        run, event_task, page, found, archive, archive_problem = opened
        async with self:
            if generation != self._generation:
                return
            self._shown_run = str(run_id)
            self.event_task = event_task
            self.not_found = self.error = ""
            try:
                self._apply_run(run, signed)
                self._apply_artifacts(found)
            except Exception as exc:  # show what failed instead of a blank page
                self.error = problem_text(exc)
            self._last_event_id = 0
            self._show_events(page)
            self.archive_notice = archive_notice(archive) + archive_problem
            self._archived = archive is not None
            self.loaded = True
            self._seen_at = time.monotonic()
        yield RunDetailState.watch
        yield self._title_script()
        if self.follow:
            yield rx.call_script(SCROLL_LOG_TO_END)

    async def _read_run(
        self, signed: SignedIn, run_id: uuid.UUID, filters: dict[str, Any], wanted_log_task: str
    ) -> tuple[dict[str, Any], str, Any, Any, Any, str]:
        """The run, its newest events, artifacts and archive, in one transaction; a database that fails to
        answer (a dropped connection, a pool that stayed full) is asked again before the page gives up."""

        async def read() -> tuple[dict[str, Any], str, Any, Any, Any, str]:
            async with as_user(signed.principal) as conn:
                run = await runs.get_run(conn, run_id=run_id)
                by_key = {task["key"]: str(task["id"]) for task in run["tasks"]}
                event_task = by_key.get(wanted_log_task, "")
                page = await events.list_events(
                    conn, run_id=run_id, **(filters | {"task_id": uuid.UUID(event_task) if event_task else None}),
                    limit=EVENTS_PAGE,
                )  # fmt: skip
                found = await artifacts.list_run_artifacts(conn, run_id=run_id)
                archive = await retention.archive_of(conn, run_id=run_id)
                archive_problem = ""
                if archive is not None:  # the attempts table and the timeline come from the archive too
                    try:
                        await retention.fill_archived_attempts(conn, run=run)
                    except StorageError as exc:  # the page still opens; the notice says what is wrong
                        archive_problem = f" Its attempts could not be read back: {exc}"
            return run, event_task, page, found, archive, archive_problem

        return await retry_transaction(
            read, what=f"opening run {run_id}", base_delay_s=LOAD_RETRY_SECONDS, retry_if=is_transient_for_reads
        )

    def _reset(self) -> None:
        self.header = RunHeader()
        self.params, self.tasks, self.attempts, self.events, self.run_artifacts = [], [], [], [], []
        self.dag, self.gantt = go.Figure(), go.Figure()
        self._first_event_id = self._last_event_id = 0
        self._figure_signature = ""
        self._gantt_at = 0.0
        self._idle_ticks = 0
        self._title_ticks = 0
        self.loaded = self.load_failed = False
        self.not_found = self.error = ""
        self.has_older = False
        self.confirm_cancel = False
        self.confirm_rerun_from = False
        self.rerun_task = ""
        self.event_task = ""
        self.reruns = []
        self.archive_notice = ""
        self._archived = False
        self.archived_events = []
        self.archived_loaded = self.archived_more = self.is_loading_archive = False

    def _apply_run(self, run: dict[str, Any], signed: SignedIn) -> None:
        """Header, parameters, tasks, attempts and (when they changed) the figures of a fresh run."""
        now = datetime.now(UTC)
        tasks, order = ordered_tasks(run)
        attempts = flat_attempts(tasks)
        self.header = run_header(run, now=now)
        self.params = param_rows(run["params"])
        self.reruns = rerun_links(run)
        self.can_operate_run = signed.can_operate(run["project_id"])
        self.tasks = task_rows(tasks, now=now)
        self.attempts = attempt_rows(attempts, order, now=now)
        grow = time.monotonic() - self._gantt_at >= GANTT_GROW_SECONDS
        figures = updated_figures(tasks, attempts, shown=self._figure_signature, now=now, grow=grow)
        if figures.dag is not None:
            self.dag = figures.dag
        if figures.gantt is not None:
            self.gantt = figures.gantt
            self._gantt_at = time.monotonic()
        self._figure_signature = figures.signature

    def _apply_artifacts(self, found: list[dict[str, Any]]) -> None:
        self.run_artifacts = artifact_rows(found)

    def _show_events(self, rows: list[dict[str, Any]]) -> None:
        """The newest page of events replaces what is shown."""
        self.events = [event_row(row) for row in rows]
        self._first_event_id = self.events[0].id if self.events else 0
        self._last_event_id = self.events[-1].id if self.events else self._last_event_id
        self.has_older = len(rows) == EVENTS_PAGE

    def _append_events(self, rows: list[dict[str, Any]]) -> None:
        """Events newer than the last one shown join the tail (which keeps at most MAX_EVENTS_KEPT)."""
        kept = [*self.events, *(event_row(row) for row in rows)]
        if len(kept) > MAX_EVENTS_KEPT:
            kept = kept[-MAX_EVENTS_KEPT:]
            self.has_older = True
        self.events = kept
        self._first_event_id = kept[0].id
        self._last_event_id = kept[-1].id

    def _title_script(self) -> Any:
        """The browser tab names the run (its history and bookmarks too); the router may set its own title
        after the page loads, so the first ticks set it again when it differs."""
        title = json.dumps(f"{self.header.name} · Run · {PRODUCT_NAME}")
        return rx.call_script(f"if (document.title !== {title}) {{ document.title = {title}; }}")

    @background
    async def tick(self, _now: str = "") -> AsyncIterator[Any]:
        """Every second while the page is open: refresh, and keep the push watcher running."""
        async with self:
            self._seen_at = time.monotonic()
            start_watcher = not self._watching and bool(self._shown_run)
            title = self._title_script() if self._title_ticks < TITLE_TICKS and self.header.name else None
            self._title_ticks += 1 if title is not None else 0
        if title is not None:
            yield title
        if start_watcher:
            yield RunDetailState.watch
        await self._refresh()

    @background
    async def watch(self) -> None:
        """Refresh the moment the run's events arrive (Postgres LISTEN/NOTIFY through the process's
        notifier), for as long as the browser keeps ticking; the tick remains the fallback."""
        async with self:
            if self._watching or not self._shown_run:
                return
            self._watching = True
            run = self._shown_run

        async def still_shown() -> bool:
            async with self:  # stop when the page was left (no tick for a while) or shows another run
                return self._shown_run == run and time.monotonic() - self._seen_at <= WATCH_IDLE_SECONDS

        async def refresh_soon() -> None:
            async with self:
                wait = self._refreshed_at + PUSH_REFRESH_SECONDS - time.monotonic()
            if wait > 0:  # a refresh just ran: the next one, a moment later, reads what arrives meanwhile too
                await asyncio.sleep(wait)
            await self._refresh()

        try:
            await notify.watch(
                EVENTS_CHANNEL, run, wait_s=WATCH_WAIT_SECONDS, still_wanted=still_shown, on_notify=refresh_soon
            )
        finally:
            async with self:
                self._watching = False

    async def _refresh(self) -> None:
        """New events (after the last one shown), and the run while it is not finished; the browser's
        auto-scroll keeps the newest event in view when following."""
        async with self:
            if self._refreshing or not self.loaded or not self._shown_run or self.not_found:
                return
            self._refreshing = True
            self._refreshed_at = time.monotonic()
            generation = self._generation
            run_id = uuid.UUID(self._shown_run)
            after = self._last_event_id
            filters = self._event_filters()
            # A finished run stops changing; its events may still trickle in for a moment.
            # An archived run finished days ago: nothing to refresh (a refresh would also drop the attempts
            # the page took from the archive).
            settle = (self.header.is_terminal and self._idle_ticks > 5) or self._archived
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            async with as_user(signed.principal) as conn:
                fresh = await events.list_events(conn, run_id=run_id, after_id=after, **filters, limit=500)
                run = None if settle else await runs.get_run(conn, run_id=run_id)
                found = None
                if run is not None and run["status"] in TERMINAL and not settle:
                    found = await artifacts.list_run_artifacts(conn, run_id=run_id)
            async with self:
                if generation != self._generation:
                    return
                if run is not None:
                    self._apply_run(run, signed)
                if found is not None:
                    self._apply_artifacts(found)
                if fresh:
                    self._append_events(fresh)
                    self._idle_ticks = 0
                elif self.header.is_terminal:
                    self._idle_ticks += 1
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
        finally:
            async with self:
                self._refreshing = False

    @signed_in_event
    async def load_archived(self, signed: SignedIn) -> AsyncIterator[Any]:
        """The run's archived events (read back from its Parquet, checksum verified), shown above the live ones;
        again for the next page."""
        async with self:
            run_id = page_id(self)
            if run_id is None or self.is_loading_archive:
                return
            self.is_loading_archive = True
            after = self.archived_events[-1].id if self.archived_events else 0
            level, text, task_id = self.level, self.search, self.event_task
        try:
            async with as_user(signed.principal) as conn:
                _archive, rows = await retention.archived_events(
                    conn, run_id=run_id, after_id=after, limit=ARCHIVED_PAGE + 1
                )
        except Exception as exc:
            async with self:
                self.is_loading_archive = False
                self.error = problem_text(exc)
            return
        async with self:
            shown = [event_row(r, archived=True) for r in rows[:ARCHIVED_PAGE]
                     if archived_matches(r, level=level, text=text, task_id=task_id)]  # fmt: skip
            self.archived_events = [*self.archived_events, *shown]
            self.archived_more = len(rows) > ARCHIVED_PAGE
            self.archived_loaded = True
            self.is_loading_archive = False
        yield rx.call_script(SCROLL_LOG_TO_START)

    @background
    async def load_older(self) -> AsyncIterator[Any]:
        """The page of events before the oldest one shown."""
        async with self:
            if not self._first_event_id or not self._shown_run:
                return
            before, run_id = self._first_event_id, uuid.UUID(self._shown_run)
            filters = self._event_filters()
            self.follow = False  # reading history: stop jumping to the end
        signed = await self.signed_in()
        if signed is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                page = await events.list_events(
                    conn, run_id=run_id, before_id=before, **filters,
                    limit=EVENTS_PAGE,
                )  # fmt: skip
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            self.events = [*(event_row(row) for row in page), *self.events]
            if self.events:
                self._first_event_id = self.events[0].id
            self.has_older = len(page) == EVENTS_PAGE
        yield rx.call_script(SCROLL_LOG_TO_START)

    @handler
    def set_level(self, level: str) -> Any:
        """Show events of this level and above (reloads the newest page)."""
        self.level = level_or_default(level)
        return [RunDetailState.reload_events, *self._share_address()]

    @handler
    def set_event_task(self, task_id: str) -> Any:
        """Show only this task's events ("all" for every task's; reloads the newest page)."""
        self.event_task = task_id if task_id in {task.id for task in self.tasks} else ""
        return [RunDetailState.reload_events, *self._share_address()]

    @handler
    def set_search(self, text: str) -> Any:
        """Show only events whose message contains the text (reloads the newest page)."""
        self.search = text[:200]
        return [RunDetailState.reload_events, *self._share_address()]

    @handler
    def set_follow(self, follow: bool) -> Any:
        """Follow mode: keep the log scrolled to the newest event."""
        self.follow = follow
        # Either way the view starts at the newest event; only with follow does it move on its own.
        return rx.call_script(SCROLL_LOG_TO_END)

    @handler
    def set_tab(self, tab: str) -> Any:
        """Switch tabs (the URL keeps the tab, so a link opens it)."""
        self.tab = tab if tab in TABS else "overview"
        # The address names the tab, so a reload or a copied link opens it.
        share = self._share_address()
        if self.tab == "timeline" and self.follow:
            return [*share, rx.call_script(SCROLL_LOG_TO_END)]
        return share

    @background
    async def reload_events(self) -> AsyncIterator[Any]:
        """The newest page of events for the current level and search."""
        async with self:
            if not self._shown_run:
                return
            run_id = uuid.UUID(self._shown_run)
            filters = self._event_filters()
            self._generation += 1
            generation = self._generation
        signed = await self.signed_in()
        if signed is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                page = await events.list_events(conn, run_id=run_id, **filters, limit=EVENTS_PAGE)
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            if generation != self._generation:
                return
            self._show_events(page)
            self.follow = True
            # Archived events shown were filtered the old way: the notice offers them again.
            self.archived_events, self.archived_loaded, self.archived_more = [], False, False
        yield rx.call_script(SCROLL_LOG_TO_END)

    set_confirm_cancel = setter("confirm_cancel")

    @background
    @exclusive("is_acting")
    async def cancel(self) -> AsyncIterator[Any]:
        """Cancel the run: waiting tasks end now, running ones are stopped by their agents. The SQL
        refuses it (LH403) for anyone below operator, whatever this page showed."""
        async with self:
            self.confirm_cancel = False
            shown = self._shown_run
        if not shown:
            return
        cancelled = await self._read_as_user(
            lambda conn, signed: runs.cancel_run(conn, run_id=uuid.UUID(shown), by=signed.principal.email),
            needs_project=False,
        )
        if cancelled.signed is None:
            return
        if cancelled.value is not None:
            async with self:
                self._apply_run(cancelled.value, cancelled.signed)
        if cancelled.error:
            yield rx.toast.error(f"Cancel refused: {cancelled.error}")
        else:
            yield rx.toast.info("Cancel requested: waiting tasks ended, running ones are being stopped")

    @background
    async def retry(self) -> AsyncIterator[Any]:
        """Re-run every task (failed or cancelled runs)."""
        async for event in self._rerun("all", None):
            yield event

    @background
    async def rerun_failed(self) -> AsyncIterator[Any]:
        """Re-run the failed, cancelled and downstream tasks, reusing the succeeded ones' outcomes."""
        async for event in self._rerun("failed", None):
            yield event

    @background
    async def rerun_from_task(self) -> AsyncIterator[Any]:
        """Re-run the chosen task and its downstream tasks, reusing the others' outcomes."""
        async with self:
            task, self.confirm_rerun_from = self.rerun_task, False
        async for event in self._rerun("from_task", task or None):
            yield event

    @handler
    def set_confirm_rerun_from(self, is_open: bool) -> None:
        """Open or close the "Re-run from task" dialog (its task starts as the first unsuccessful one)."""
        self.confirm_rerun_from = is_open
        if is_open and self.tasks:
            unsuccessful = [task.key for task in self.tasks if task.status != "succeeded"]
            self.rerun_task = (unsuccessful or [self.tasks[0].key])[0]

    set_rerun_task = setter("rerun_task")

    async def _rerun(self, mode: str, from_task: str | None) -> AsyncIterator[Any]:
        async with self:
            if self.is_acting or not self._shown_run:
                return
            self.is_acting = True
            run_id = uuid.UUID(self._shown_run)
        try:
            event = await rerun_event(await self.signed_in(), run_id, mode=mode, from_task=from_task)
        finally:
            async with self:
                self.is_acting = False
        if event is not None:
            yield event
