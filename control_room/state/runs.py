"""Runs list: filters, sort, keyset pages, live refresh of the rows on screen, and the submit dialog."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import reflex as rx

from control_room import routes
from control_room.services import runs
from control_room.services.errors import Invalid
from control_room.services.ui_examples import EXAMPLES, example
from control_room.state import formatting
from control_room.state.base import ALL, SessionState, SignedIn, as_user, problem_text, replace_address
from control_room.state.events import background, exclusive, handler, page_url, setter
from control_room.state.rows import RunRow
from control_room.state.run_actions import rerun_event
from control_room.state.run_detail.rows import run_facts
from control_room.state.task_form import TaskForm

PAGE_SIZE = 50
MAX_SHARED_PAGE = 100_000  # a page number in a shared address beyond this is ignored (first page)
SHARED_KEYS = ("status", "range", "engine", "trigger", "q", "sort", "dir")
TIME_RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
ENGINES = ("shell", "python", "dbt", "spark", "duckdb", "trino", "delta", "catalog_sync")
VIEW_FIELDS = ("statuses", "engine", "trigger", "time_range", "text", "sort", "descending", "job", "job_name")


def run_row(row: dict[str, Any]) -> RunRow:
    """The table row of a run as ``runs.list_runs_sorted`` / ``runs_by_id`` return it."""
    return RunRow(
        **run_facts(row, duration=formatting.duration(row["duration_s"])),
        short_id=formatting.short_id(row["id"]),
        engines=", ".join(row["engines"]),
        tasks=f"{row['tasks_done']}/{row['task_count']}",
        tags=list(row.get("tags") or []),
        can_cancel=row["status"] in ("queued", "running") and not row["cancel_requested"],
        can_rerun=row["status"] in ("failed", "cancelled"),
        href=routes.run_detail(str(row["id"])),
    )


class RunsLiveState(rx.State):
    """The runs list's "Live · updated at" label and its spinner, in a state of their own: any change of RunsState
    re-renders all the rows of the table (one React context per state), and the label changes every 1.5 s."""

    updated_at: rx.Field[str] = rx.field("")
    is_loading: rx.Field[bool] = rx.field(False)


class RunsState(TaskForm, SessionState):
    """The runs table of the selected project and environment."""

    rows: rx.Field[list[RunRow]] = rx.field(default_factory=list)
    statuses: rx.Field[list[str]] = rx.field(default_factory=list)
    engine: rx.Field[str] = rx.field(ALL)
    trigger: rx.Field[str] = rx.field(ALL)
    time_range: rx.Field[str] = rx.field(ALL)
    text: rx.Field[str] = rx.field("")
    sort: rx.Field[str] = rx.field("created")
    descending: rx.Field[bool] = rx.field(True)
    page: rx.Field[int] = rx.field(1)
    has_next: rx.Field[bool] = rx.field(False)
    loaded: rx.Field[bool] = rx.field(False)
    error: rx.Field[str] = rx.field("")
    job: rx.Field[str] = rx.field("")  # a job template's id: only its runs (from ?job=)
    job_name: rx.Field[str] = rx.field("")

    selected: rx.Field[list[str]] = rx.field(default_factory=list)  # run ids ticked for a bulk cancel
    is_acting: rx.Field[bool] = rx.field(False)

    submit_open: rx.Field[bool] = rx.field(False)
    example_key: rx.Field[str] = rx.field(EXAMPLES[0].key)
    spec_text: rx.Field[str] = rx.field("")
    params_text: rx.Field[str] = rx.field("{}")
    submit_environment: rx.Field[str] = rx.field("dev")
    submit_error: rx.Field[str] = rx.field("")
    is_submitting: rx.Field[bool] = rx.field(False)

    _cursors: list[str | None] = [None]  # the cursor that starts each page seen so far
    _target: int = 1  # the page shown, or asked for while it is read
    _generation: int = 0  # bumped on every reload: a slower, older answer is dropped
    _loading: bool = False
    _refreshing: bool = False

    @rx.var
    def example_description(self) -> str:
        """What the chosen example does."""
        return example(self.example_key).description

    def _view(self) -> dict[str, Any]:
        """The list's filters, sort and search as shown (what the query and the shared address are made of)."""
        return {name: getattr(self, name) for name in VIEW_FIELDS}

    def _query(self, signed: SignedIn, view: dict[str, Any]) -> runs.RunsQuery | None:
        if signed.project_id is None:
            return None
        window = TIME_RANGES.get(view["time_range"])
        return runs.RunsQuery(
            project_id=signed.project_id,
            environment=signed.environment,
            statuses=tuple(view["statuses"]),
            engine=None if view["engine"] == ALL else view["engine"],
            trigger=None if view["trigger"] == ALL else view["trigger"],
            text=view["text"].strip() or None,
            created_after=datetime.now(UTC) - window if window else None,
            sort=view["sort"],
            descending=view["descending"],
            template_id=_uuid_or_none(view["job"]),
        )

    def _show(self, **values: Any) -> None:
        """Assign the fields whose value changed. Reflex sends every assigned field, equal or not, and any change
        of this state re-renders every row of the table (one React context per state): an unchanged list must
        send nothing."""
        for name, value in values.items():
            if getattr(self, name) != value:
                setattr(self, name, value)

    async def _live(self, *, loading: bool, updated: bool = False) -> None:
        """Call with the lock held: the "Live · updated" label (its own state, see RunsLiveState)."""
        live = await self.get_state(RunsLiveState)
        if live.is_loading != loading:
            live.is_loading = loading
        if updated:
            live.updated_at = datetime.now(UTC).strftime("%H:%M:%S")

    @background
    async def open_list(self) -> AsyncIterator[Any]:
        """On opening the page (and after a project or environment switch): the address's filters and page, and
        the rows, in one event and one update of the table (see ``_from_address``)."""
        async for event in self._show_page(0, opened=True):
            yield event

    @background
    async def load(self) -> AsyncIterator[Any]:
        """Fetch the current page (after a filter change: the first one)."""
        async for event in self._show_page(0):
            yield event

    async def _show_page(self, step: int, *, opened: bool = False) -> AsyncIterator[Any]:
        """Move ``step`` pages (0: stay) and read the page, in one event: the move and the query's inputs under
        one lock, the query unlocked, the rows under a second lock. Paging is what an operator does most on this
        list, so it is one round trip, not a handler chaining a load; and the table is updated once, with the
        new page's rows (the page number, filters and rows together), not first for a "loading" flag."""
        async with self:
            changes = self._from_address() if opened else {}
            if opened:
                self._show(submit_open=False, submit_error="")  # at once (no update when it was closed)
            target = self._target + step
            if step > 0 and (target - 1 >= len(self._cursors) or self._cursors[target - 1] is None):
                return  # no next page (or the page before it is still being read)
            if step < 0 and target < 1:
                return
            if step < 0 and target > 1 and self._cursors[target - 1] is None:
                target, self._cursors = 1, [None]  # opened from a link: the pages before it are not known
            self._target = target
            self._generation += 1
            generation = self._generation
            self._loading = True
            await self._live(loading=True)
            view = self._view() | changes
            cursor = self._cursors[target - 1] if target - 1 < len(self._cursors) else None
            signed = self._signed_in_from_cache()
            query = self._query(signed, view) if signed is not None else None
            address = self._shared_url(view, target)
        if signed is None:  # the cached session check is stale (or nobody is signed in)
            signed = await self.signed_in()
            if signed is None:
                yield rx.redirect(routes.login(next_path=await self.current_path()))
                return
            query = self._query(signed, view)
        await self._fetch(signed, query, cursor, generation, page=target, changes=changes)
        if step:
            yield rx.call_script(replace_address(address))

    async def _fetch(
        self,
        signed: SignedIn,
        query: runs.RunsQuery | None,
        cursor: str | None,
        generation: int,
        *,
        page: int,
        changes: dict[str, Any],
    ) -> None:
        rows: list[RunRow] = []
        next_cursor: str | None = None
        error = ""
        if query is not None:
            try:
                async with as_user(signed.principal) as conn:
                    found, next_cursor = await runs.list_runs_sorted(conn, query=query, cursor=cursor, limit=PAGE_SIZE)
                rows = [run_row(row) for row in found]
            except Exception as exc:
                error = problem_text(exc)
        else:
            error = "You are not a member of any project yet: ask an admin for a role."
        async with self:
            if generation != self._generation:
                return
            del self._cursors[page:]
            self._cursors.append(next_cursor)
            self._loading = False
            self._show(**changes, rows=rows, error=error, has_next=next_cursor is not None, page=page, loaded=True)
            await self._live(loading=False, updated=True)

    @background
    async def tick(self, _now: str = "") -> None:
        """Live refresh, every ~1.5 s while the page is open: the first page is queried again (new
        runs appear on top); later pages refresh their rows by id (primary-key lookups). Rows that did not
        change are not sent again: only the "updated" label moves."""
        async with self:
            if self._refreshing or self._loading or not self.loaded:
                return
            self._refreshing = True
            generation = self._generation
            page = self.page
            view = self._view()
            visible = [uuid.UUID(row.id) for row in self.rows]
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            if page == 1:
                await self._fetch(signed, self._query(signed, view), None, generation, page=1, changes={})
                return
            async with as_user(signed.principal) as conn:
                fresh = {str(row["id"]): run_row(row) for row in await runs.runs_by_id(conn, run_ids=visible)}
            async with self:
                if generation == self._generation:
                    self._show(rows=[fresh.get(row.id, row) for row in self.rows])
                    await self._live(loading=False, updated=True)
        except Exception as exc:
            async with self:
                self._show(error=problem_text(exc))
        finally:
            async with self:
                self._refreshing = False

    def _restart(self) -> None:
        self._target = 1
        self._cursors = [None]

    @handler
    def toggle_status(self, status: str) -> Any:
        """Add or remove a status from the filter."""
        self.statuses = (
            [s for s in self.statuses if s != status]
            if status in self.statuses
            else [
                *self.statuses,
                status,
            ]
        )
        return self._reload_and_share()

    @handler
    def clear_statuses(self) -> Any:
        """Show every status."""
        self.statuses = []
        return self._reload_and_share()

    @handler
    def set_filter(self, name: str, value: str) -> Any:
        """Set the engine, trigger or time-range filter."""
        if name not in ("engine", "trigger", "time_range"):
            return None
        setattr(self, name, value)
        return self._reload_and_share()

    @handler
    def set_text(self, value: str) -> Any:
        """Search by name or id prefix (the input is debounced)."""
        self.text = value[:200]
        return self._reload_and_share()

    @handler
    def set_sort(self, sort: str) -> Any:
        """Order by created, started or duration."""
        if sort in runs.RUN_SORTS:
            self.sort = sort
        return self._reload_and_share()

    @handler
    def flip_direction(self) -> Any:
        """Newest/longest first, or the other way round."""
        self.descending = not self.descending
        return self._reload_and_share()

    def _from_address(self) -> dict[str, Any]:
        """Call with the lock held, on opening the page: what the address changes in the list, as field values to
        show with the rows (the page's first page, or a shared later one: its cursors are set here). The URL may
        narrow the list: ``?job=`` to a job's runs, ``?status=failed,cancelled`` and ``?range=24h`` (the
        overview's cards link so). Dialogs never reopen by themselves: opening the page closes the submit dialog
        and forgets its error (``_show_page`` and ``_forget_page_data``)."""
        query = page_url(self).query_parameters
        changes: dict[str, Any] = {"job": query.get("job", ""), "job_name": query.get("job_name", "")}
        if any(key in query for key in SHARED_KEYS):  # a shared link: its filters, sort and search win
            window, sort = str(query.get("range", "")), str(query.get("sort", ""))
            engine, trigger = str(query.get("engine", "")), str(query.get("trigger", ""))
            changes |= {
                "statuses": [s for s in str(query.get("status", "")).split(",") if s in runs.RUN_STATUSES],
                "time_range": window if window in TIME_RANGES else ALL,
                "engine": engine if engine in ENGINES else ALL,
                "trigger": trigger if trigger in runs.TRIGGERS else ALL,
                "text": str(query.get("q", ""))[:200],
                "sort": sort if sort in runs.RUN_SORTS else "created",
                "descending": query.get("dir", "") != "asc",
            }
        self._restart()
        # A shared later page: its number and the cursor that starts it (the pages before it are not known:
        # "Newer" from there goes back to the first page).
        page, after = str(query.get("page", "")), str(query.get("after", ""))
        if page.isdigit() and 1 < int(page) <= MAX_SHARED_PAGE and 0 < len(after) <= 400:
            self._target = int(page)
            self._cursors = [*([None] * (self._target - 1)), after]
        return changes

    def _forget_page_data(self) -> None:
        """When a tab loads a page anew (its hydrate, see SessionGuard): the rows of its last visit are not sent
        to be drawn before the list is read again (they were another page, or another filter's)."""
        self._show(
            rows=[], loaded=False, has_next=False, page=1, error="", selected=[], submit_open=False, submit_error=""
        )
        self._restart()
        self._generation += 1  # an answer still on its way is for the last visit

    def _shared_url(self, view: dict[str, Any] | None = None, page: int = 1) -> str:
        """The list's address with its filters, sort and search (and a later page's cursor), so a copied link
        opens the same list."""
        view = self._view() if view is None else view
        query = {
            "job": view["job"], "job_name": view["job_name"], "status": ",".join(view["statuses"]),
            "range": "" if view["time_range"] == ALL else view["time_range"],
            "engine": "" if view["engine"] == ALL else view["engine"],
            "trigger": "" if view["trigger"] == ALL else view["trigger"], "q": view["text"].strip(),
            "sort": "" if view["sort"] == "created" else view["sort"], "dir": "" if view["descending"] else "asc",
        }  # fmt: skip
        cursor = self._cursors[page - 1] if page - 1 < len(self._cursors) else None
        if page > 1 and cursor:  # a later page: its number and the cursor that starts it
            query |= {"page": str(page), "after": cursor}
        shown = {key: value for key, value in query.items() if value}
        return f"{routes.RUNS}?{urlencode(shown)}" if shown else routes.RUNS

    def _reload_and_share(self) -> Any:
        """First page of the new list, and the address bar showing it (replaced in place: Back still
        leaves the page, a reload or a copied link reopens this list)."""
        self._restart()
        return [RunsState.load, rx.call_script(replace_address(self._shared_url()))]

    @rx.var
    def failed_recently(self) -> bool:
        """Whether the "Failed in the last 24 h" quick filter is what the list shows."""
        return self.statuses == ["failed"] and self.time_range == "24h"

    @handler
    def quick_failed_24h(self) -> Any:
        """The quick filter: failed runs created in the last 24 hours (again: every run)."""
        if self.statuses == ["failed"] and self.time_range == "24h":
            self.statuses, self.time_range = [], ALL
        else:
            self.statuses, self.time_range = ["failed"], "24h"
        return self._reload_and_share()

    @handler
    def clear_job(self) -> Any:
        """Show the runs of every job again."""
        self.job = self.job_name = ""
        return rx.redirect(routes.RUNS)

    @background
    async def next_page(self) -> AsyncIterator[Any]:
        """The next (older) page, and the address showing it."""
        async for event in self._show_page(+1):
            yield event

    @background
    async def previous_page(self) -> AsyncIterator[Any]:
        """The previous (newer) page, and the address showing it."""
        async for event in self._show_page(-1):
            yield event

    # Row actions and bulk cancel ----------------------------------------------------------------------

    @handler
    def toggle_selected(self, run_id: str) -> None:
        """Tick or untick a run for the bulk cancel."""
        self.selected = (
            [r for r in self.selected if r != run_id] if run_id in self.selected else [*self.selected, run_id]
        )

    @handler
    def clear_selected(self) -> None:
        """Untick every run."""
        self.selected = []

    @background
    async def cancel_selected(self) -> AsyncIterator[Any]:
        """Cancel every ticked run (each checked by the SQL as the user); says how many were cancelled."""
        async with self:
            if self.is_acting or not self.selected:
                return
            self.is_acting = True
            chosen = list(self.selected)
        async for event in self._cancel(chosen):
            yield event

    @background
    @exclusive("is_acting")
    async def cancel_one(self, run_id: str) -> AsyncIterator[Any]:
        """The row action: cancel this run."""
        async for event in self._cancel([run_id]):
            yield event

    async def _cancel(self, run_ids: list[str]) -> AsyncIterator[Any]:
        refused: list[str] = []
        try:
            signed = await self.signed_in()
            if signed is None:
                return
            for run_id in run_ids:
                try:
                    async with as_user(signed.principal) as conn:
                        await runs.cancel_run(conn, run_id=uuid.UUID(run_id), by=signed.principal.email)
                except Exception as exc:
                    refused.append(f"{formatting.short_id(run_id)}: {problem_text(exc)}")
        finally:
            async with self:
                self.is_acting = False
                self.selected = []
        done = len(run_ids) - len(refused)
        if done:
            yield rx.toast.info(f"Cancel requested for {done} run{'s' if done > 1 else ''}")
        if refused:
            yield rx.toast.error("Cancel refused: " + "; ".join(refused[:3]))
        yield RunsState.load

    @background
    @exclusive("is_acting")
    async def rerun_one(self, run_id: str) -> AsyncIterator[Any]:
        """The row action: re-run the failed, cancelled and downstream tasks of this run, reusing the rest."""
        event = await rerun_event(await self.signed_in(), uuid.UUID(run_id), mode="failed")
        if event is not None:
            yield event

    # Submit dialog ------------------------------------------------------------------------------

    @handler
    def open_submit(self) -> None:
        """Open the dialog with the chosen example filled in."""
        self.submit_open = True
        self.submit_error = ""
        self.submit_environment = self.environment if self.environment != ALL else "dev"
        self._fill_example(self.example_key)

    set_submit_open = setter("submit_open")

    def _fill_example(self, key: str) -> None:
        chosen = example(key)
        self.example_key = chosen.key
        self.spec_text = json.dumps(chosen.spec(), indent=2)
        self.params_text = json.dumps(chosen.params, indent=2)
        self.form_task = 0
        self._sync_form()

    def _read_spec(self) -> dict[str, Any]:
        try:
            return _parse_object(self.spec_text, "spec")
        except Invalid as exc:
            raise ValueError(f"The spec is {exc.message}: fix it in the JSON to use the form.") from exc

    def _write_spec(self, spec: dict[str, Any]) -> None:
        self.spec_text = json.dumps(spec, indent=2)

    @handler
    def choose_example(self, key: str) -> None:
        """Replace the spec and params with another example."""
        self._fill_example(key)
        self.submit_error = ""

    set_spec_text = setter("spec_text", then="_sync_form")  # the edited spec (JSON): the form follows
    set_params_text = setter("params_text")
    set_submit_environment = setter("submit_environment")

    @background
    @exclusive("is_submitting")
    async def submit(self) -> AsyncIterator[Any]:
        """Submit the edited spec as a manual run (the SQL checks the operator role again)."""
        async with self:
            self.submit_error = ""
            spec_text, params_text, environment = self.spec_text, self.params_text, self.submit_environment

        async def work() -> uuid.UUID:
            signed = await self.signed_in()
            if signed is None or signed.project_id is None:
                raise Invalid("sign in and pick a project first", field="project")
            spec = _parse_object(spec_text, "spec")
            params = _parse_object(params_text, "params")
            async with as_user(signed.principal) as conn:
                run_id, _ = await runs.submit_run(
                    conn,
                    project=str(signed.project_id),
                    environment=environment,
                    spec=spec,
                    params=params,
                    idempotency_key=None,
                    priority=0,
                    tags=[],
                    trigger="manual",
                    requested_by=signed.principal.user_id,
                    requested_by_name=signed.principal.email,
                )
            return run_id

        run_id = await self._dialog_sent(work, error="submit_error", dialog="submit_open")
        if run_id is None:
            return
        yield rx.toast.success(f"Run {formatting.short_id(run_id)} submitted")
        yield rx.redirect(routes.run_detail(str(run_id)))


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _parse_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise Invalid(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", field=field) from exc
    if not isinstance(value, dict):
        raise Invalid("must be a JSON object", field=field)
    return value
