"""One run: header, task DAG, tasks and attempts, Gantt, the live tail of its events, its artifacts,
and cancel/retry for operators."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import reflex as rx

from control_room import routes
from control_room.components.figures import dag_figure, gantt_figure, task_order
from control_room.db.notify import EVENTS_CHANNEL, get_notifier
from control_room.services import artifacts, events, runs
from control_room.services.errors import NotFound
from control_room.state import formatting
from control_room.state.base import SessionState, SignedIn, as_user, problem_text
from control_room.state.events import background, handler

EVENTS_PAGE = 200
WATCH_WAIT_SECONDS = 2.0
WATCH_IDLE_SECONDS = 6.0
MAX_EVENTS_KEPT = 2000
LEVELS = ("debug", "info", "warning", "error")
TABS = ("overview", "timeline", "artifacts")
TERMINAL = ("succeeded", "failed", "cancelled")
# After React rendered the new rows (a state update and this script arrive together).
SCROLL_LOG_TO_END = (
    "setTimeout(() => { const log = document.getElementById('event-log'); "
    "if (log) { log.scrollTop = log.scrollHeight; } }, 80)"
)


@dataclasses.dataclass
class RunHeader:
    """The run's identity, state and timing, formatted."""

    id: str = ""
    name: str = ""
    status: str = ""
    project: str = ""
    project_id: str = ""
    environment: str = ""
    trigger: str = ""
    requested_by: str = ""
    created: str = ""
    started: str = ""
    finished: str = ""
    duration: str = ""
    error: str = ""
    cancel_requested: bool = False
    retry_of: str = ""
    retry_of_href: str = ""
    tasks_summary: str = ""
    is_terminal: bool = False


@dataclasses.dataclass
class ParamRow:
    name: str = ""
    value: str = ""


@dataclasses.dataclass
class TaskRow:
    id: str = ""
    key: str = ""
    engine: str = ""
    status: str = ""
    attempts: str = ""
    executor: str = ""
    pool: str = ""
    started: str = ""
    duration: str = ""
    depends_on: str = ""
    error: str = ""


@dataclasses.dataclass
class AttemptRow:
    task_key: str = ""
    attempt: int = 0
    executor: str = ""
    claimed: str = ""
    started: str = ""
    duration: str = ""
    outcome: str = ""
    error: str = ""


@dataclasses.dataclass
class EventRow:
    id: int = 0
    time: str = ""
    level: str = ""
    task: str = ""
    type: str = ""
    message: str = ""
    detail: str = ""  # the event's data, compact, shown muted after the message


@dataclasses.dataclass
class RunArtifactRow:
    id: str = ""
    name: str = ""
    task_key: str = ""
    size: str = ""
    sha_short: str = ""
    content_type: str = ""
    href: str = ""


def _event_row(row: dict[str, Any]) -> EventRow:
    data = dict(row["data"] or {})
    if data.get("stream") == "stdout":  # the usual case; stderr stays visible
        data.pop("stream")
    detail = " ".join(f"{key}={formatting.scalar(value)}" for key, value in data.items())
    return EventRow(
        id=int(row["id"]),
        time=formatting.clock(row["ts"]),
        level=row["level"],
        task=row["task_key"] or "run",
        type=row["type"],
        message=row["message"] or row["type"],
        detail=detail if len(detail) <= 240 else detail[:240] + "…",
    )


class RunDetailState(SessionState):
    """The run page; refreshed every second while open (run and tasks, then new events only)."""

    header: rx.Field[RunHeader] = rx.field(default_factory=RunHeader)
    params: rx.Field[list[ParamRow]] = rx.field(default_factory=list)
    tasks: rx.Field[list[TaskRow]] = rx.field(default_factory=list)
    attempts: rx.Field[list[AttemptRow]] = rx.field(default_factory=list)
    run_artifacts: rx.Field[list[RunArtifactRow]] = rx.field(default_factory=list)
    dag: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    gantt: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    events: rx.Field[list[EventRow]] = rx.field(default_factory=list)
    level: rx.Field[str] = rx.field("debug")
    search: rx.Field[str] = rx.field("")
    follow: rx.Field[bool] = rx.field(True)
    has_older: rx.Field[bool] = rx.field(False)
    tab: rx.Field[str] = rx.field("overview")
    not_found: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    can_operate_run: rx.Field[bool] = rx.field(False)
    is_acting: rx.Field[bool] = rx.field(False)
    confirm_cancel: rx.Field[bool] = rx.field(False)

    _shown_run: str = ""
    _first_event_id: int = 0
    _last_event_id: int = 0
    _figure_signature: str = ""
    _refreshing: bool = False
    _generation: int = 0
    _idle_ticks: int = 0
    _watching: bool = False
    _seen_at: float = 0.0

    @rx.var
    def event_count_label(self) -> str:
        """How many events are loaded here (the newest ones)."""
        return f"{len(self.events):,} events shown" + (" · older available" if self.has_older else "")

    def _current_run_id(self) -> uuid.UUID | None:
        # The route's [run_id] argument: Reflex adds it to the root state as a var.
        try:
            return uuid.UUID(str(getattr(self, "run_id", "")))
        except ValueError:
            return None

    @background
    async def load(self) -> AsyncIterator[Any]:
        """Open the run: header, tasks, figures, newest events and artifacts, in one transaction."""
        signed = await self.signed_in()
        if signed is None:
            yield rx.redirect(routes.login(next_path=await self.current_path()))
            return
        async with self:
            run_id = self._current_run_id()
            wanted_tab = self.router.url.query_parameters.get("tab", "")
            if run_id is None or str(run_id) != self._shown_run:
                self._reset()
            self.tab = wanted_tab if wanted_tab in TABS else "overview"
            self._generation += 1
            generation = self._generation
            level, search = self.level, self.search
        if run_id is None:
            async with self:
                self.not_found = "This is not a run id."
            return
        try:
            async with as_user(signed.principal) as conn:
                run = await runs.get_run(conn, run_id=run_id)
                page = await events.list_events(
                    conn, run_id=run_id, min_level=_min_level(level), text=search or None, limit=EVENTS_PAGE
                )
                found = await artifacts.list_run_artifacts(conn, run_id=run_id)
        except NotFound as exc:
            async with self:
                self.not_found = exc.message
                self.loaded = True
            return
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            if generation != self._generation:
                return
            self._shown_run = str(run_id)
            self.not_found = self.error = ""
            try:
                self._apply_run(run, signed)
                self._apply_artifacts(found)
            except Exception as exc:  # show what failed instead of a blank page
                self.error = problem_text(exc)
            self.events = [_event_row(row) for row in page]
            self._first_event_id = self.events[0].id if self.events else 0
            self._last_event_id = self.events[-1].id if self.events else 0
            self.has_older = len(page) == EVENTS_PAGE
            self.loaded = True
            self._seen_at = time.monotonic()
        yield RunDetailState.watch
        if self.follow:
            yield rx.call_script(SCROLL_LOG_TO_END)

    def _reset(self) -> None:
        self.header = RunHeader()
        self.params, self.tasks, self.attempts, self.events, self.run_artifacts = [], [], [], [], []
        self.dag, self.gantt = go.Figure(), go.Figure()
        self._first_event_id = self._last_event_id = 0
        self._figure_signature = ""
        self._idle_ticks = 0
        self.loaded = False
        self.not_found = self.error = ""
        self.has_older = False
        self.confirm_cancel = False

    def _apply_run(self, run: dict[str, Any], signed: SignedIn) -> None:
        now = datetime.now(UTC)
        order = {key: index for index, key in enumerate(task_order(run["tasks"]))}
        tasks = sorted(run["tasks"], key=lambda task: order[task["key"]])
        done = sum(1 for task in tasks if task["status"] in ("succeeded", "failed", "cancelled", "timed_out",
                                                                "lost", "skipped"))  # fmt: skip
        self.header = RunHeader(
            id=str(run["id"]),
            name=run["name"],
            status=run["status"],
            project=run["project"],
            project_id=str(run["project_id"]),
            environment=run["environment"],
            trigger=run["trigger"],
            requested_by=run["requested_by_name"] or "",
            created=formatting.timestamp(run["created_at"]),
            started=formatting.timestamp(run["started_at"]),
            finished=formatting.timestamp(run["finished_at"]),
            duration=formatting.between(run["started_at"], run["finished_at"], now=now),
            error=run.get("error") or "",
            cancel_requested=bool(run["cancel_requested"]),
            retry_of=formatting.short_id(run["retry_of"]) if run["retry_of"] else "",
            retry_of_href=routes.run_detail(str(run["retry_of"])) if run["retry_of"] else "",
            tasks_summary=f"{done} of {len(tasks)} tasks done",
            is_terminal=run["status"] in TERMINAL,
        )
        self.params = [ParamRow(name=k, value=formatting.scalar(v)) for k, v in sorted(run["params"].items())]
        self.can_operate_run = signed.can_operate(run["project_id"])
        self.tasks = [
            TaskRow(
                id=str(task["id"]),
                key=task["key"],
                engine=task["engine"],
                status=task["status"],
                attempts=f"{task['attempt']}/{task['max_attempts']}",
                executor=task["executor_name"]
                or (task["attempts"][-1]["executor_name"] if task["attempts"] else "")
                or "",
                pool=task["pool"] or "",
                started=formatting.timestamp(task["started_at"]),
                duration=formatting.between(task["started_at"], task["finished_at"], now=now),
                depends_on=", ".join(task["depends_on"]),
                error=task["error"] or "",
            )
            for task in tasks
        ]
        flat = [
            {**attempt, "task_key": task["key"], "executor": attempt["executor_name"]}
            for task in tasks
            for attempt in task["attempts"]
        ]
        self.attempts = [
            AttemptRow(
                task_key=a["task_key"],
                attempt=a["attempt"],
                executor=a["executor"] or "",
                claimed=formatting.timestamp(a["claimed_at"]),
                started=formatting.timestamp(a["started_at"]),
                duration=formatting.between(a["started_at"] or a["claimed_at"], a["finished_at"], now=now),
                outcome=a["outcome"] or "running",
                error=a["error"] or "",
            )
            for a in sorted(flat, key=lambda a: (a["claimed_at"], order[a["task_key"]]))
        ]
        # Figures are rebuilt (and re-sent) only when a task or attempt changed, or while one runs.
        signature = json.dumps(
            [(t["key"], t["status"], t["attempt"]) for t in tasks]
            + [(a["task_key"], a["attempt"], a["outcome"], str(a["finished_at"])) for a in flat]
        )
        running = any(a["outcome"] is None for a in flat)
        if signature != self._figure_signature or running:
            if signature != self._figure_signature:
                self.dag = dag_figure(tasks)
            self.gantt = gantt_figure(tasks, flat, now=now)
            self._figure_signature = signature

    def _apply_artifacts(self, found: list[dict[str, Any]]) -> None:
        self.run_artifacts = [
            RunArtifactRow(
                id=str(a["id"]),
                name=a["name"],
                task_key=a["task_key"] or "",
                size=formatting.size(a["size_bytes"]),
                sha_short=a["sha256"][:12],
                content_type=a["content_type"],
                href=routes.artifacts(run_id=str(a["run_id"]), artifact_id=str(a["id"])),
            )
            for a in found
        ]

    @background
    async def tick(self, _now: str = "") -> AsyncIterator[Any]:
        """Every second while the page is open: refresh, and keep the push watcher running."""
        async with self:
            self._seen_at = time.monotonic()
            start_watcher = not self._watching and bool(self._shown_run)
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
        try:
            notifier = await get_notifier()
            while True:
                notified = await notifier.wait(notifier.waiter(EVENTS_CHANNEL, run), WATCH_WAIT_SECONDS)
                async with self:
                    # The page was left (no tick for a while) or shows another run: stop.
                    if self._shown_run != run or time.monotonic() - self._seen_at > WATCH_IDLE_SECONDS:
                        return
                if notified:
                    await self._refresh()
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
            generation = self._generation
            run_id = uuid.UUID(self._shown_run)
            after = self._last_event_id
            level, search = self.level, self.search
            # A finished run stops changing; its events may still trickle in for a moment.
            settle = self.header.is_terminal and self._idle_ticks > 5
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            async with as_user(signed.principal) as conn:
                fresh = await events.list_events(
                    conn, run_id=run_id, after_id=after, min_level=_min_level(level), text=search or None, limit=500
                )
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
                    kept = [*self.events, *(_event_row(row) for row in fresh)]
                    if len(kept) > MAX_EVENTS_KEPT:
                        kept = kept[-MAX_EVENTS_KEPT:]
                        self.has_older = True
                    self.events = kept
                    self._first_event_id = kept[0].id
                    self._last_event_id = kept[-1].id
                    self._idle_ticks = 0
                elif self.header.is_terminal:
                    self._idle_ticks += 1
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
        finally:
            async with self:
                self._refreshing = False

    @background
    async def load_older(self) -> AsyncIterator[Any]:
        """The page of events before the oldest one shown."""
        async with self:
            if not self._first_event_id or not self._shown_run:
                return
            before, run_id = self._first_event_id, uuid.UUID(self._shown_run)
            level, search = self.level, self.search
            self.follow = False  # reading history: stop jumping to the end
        signed = await self.signed_in()
        if signed is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                page = await events.list_events(
                    conn, run_id=run_id, before_id=before, min_level=_min_level(level), text=search or None,
                    limit=EVENTS_PAGE,
                )  # fmt: skip
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            self.events = [*(_event_row(row) for row in page), *self.events]
            if self.events:
                self._first_event_id = self.events[0].id
            self.has_older = len(page) == EVENTS_PAGE
        yield rx.call_script("const log = document.getElementById('event-log'); if (log) { log.scrollTop = 0; }")

    @handler
    def set_level(self, level: str) -> Any:
        """Show events of this level and above (reloads the newest page)."""
        self.level = level if level in LEVELS else "debug"
        return RunDetailState.reload_events

    @handler
    def set_search(self, text: str) -> Any:
        """Show only events whose message contains the text (reloads the newest page)."""
        self.search = text[:200]
        return RunDetailState.reload_events

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
        if self.tab == "timeline" and self.follow:
            return rx.call_script(SCROLL_LOG_TO_END)
        return None

    @background
    async def reload_events(self) -> AsyncIterator[Any]:
        """The newest page of events for the current level and search."""
        async with self:
            if not self._shown_run:
                return
            run_id = uuid.UUID(self._shown_run)
            level, search = self.level, self.search
            self._generation += 1
            generation = self._generation
        signed = await self.signed_in()
        if signed is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                page = await events.list_events(
                    conn, run_id=run_id, min_level=_min_level(level), text=search or None, limit=EVENTS_PAGE
                )
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            if generation != self._generation:
                return
            self.events = [_event_row(row) for row in page]
            self._first_event_id = self.events[0].id if self.events else 0
            self._last_event_id = self.events[-1].id if self.events else self._last_event_id
            self.has_older = len(page) == EVENTS_PAGE
            self.follow = True
        yield rx.call_script(SCROLL_LOG_TO_END)

    @handler
    def set_confirm_cancel(self, is_open: bool) -> None:
        """Open or close the cancel confirmation."""
        self.confirm_cancel = is_open

    @background
    async def cancel(self) -> AsyncIterator[Any]:
        """Cancel the run: waiting tasks end now, running ones are stopped by their agents. The SQL
        refuses it (LH403) for anyone below operator, whatever this page showed."""
        async with self:
            if self.is_acting or not self._shown_run:
                return
            self.is_acting = True
            self.confirm_cancel = False
            run_id = uuid.UUID(self._shown_run)
        message = ""
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            async with as_user(signed.principal) as conn:
                run = await runs.cancel_run(conn, run_id=run_id, by=signed.principal.email)
            async with self:
                self._apply_run(run, signed)
        except Exception as exc:
            message = problem_text(exc)
        finally:
            async with self:
                self.is_acting = False
        if message:
            yield rx.toast.error(f"Cancel refused: {message}")
        else:
            yield rx.toast.info("Cancel requested: waiting tasks ended, running ones are being stopped")

    @background
    async def retry(self) -> AsyncIterator[Any]:
        """Submit a new run with the same spec and params (failed or cancelled runs)."""
        async with self:
            if self.is_acting or not self._shown_run:
                return
            self.is_acting = True
            run_id = uuid.UUID(self._shown_run)
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            async with as_user(signed.principal) as conn:
                created = await runs.retry_run(
                    conn, run_id=run_id, requested_by=signed.principal.user_id, requested_by_name=signed.principal.email
                )
        except Exception as exc:
            yield rx.toast.error(f"Retry refused: {problem_text(exc)}")
            return
        finally:
            async with self:
                self.is_acting = False
        yield rx.redirect(routes.run_detail(str(created["id"])))


def _min_level(level: str) -> str | None:
    return None if level == "debug" else level
