"""The run page's task panel: one task drilled into (its spec, attempts, one attempt's log, artifacts and the
datasets it read and wrote), opened from a task or attempt row, kept in the address (``?task=&attempt=``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import reflex as rx
from psycopg import AsyncConnection

from control_room import routes
from control_room.services import artifacts, events, runs, task_detail
from control_room.state.base import as_user, download_script, problem_text, replace_address
from control_room.state.events import background, handler, page_id, page_url
from control_room.state.rows import AttemptRow, DatasetRow, EventRow, PanelTask, RunArtifactRow
from control_room.state.run_detail.events import event_row
from control_room.state.run_detail.state import RunDetailState
from control_room.state.run_detail.tasks import artifact_rows, attempt_rows

PANEL_EVENTS = 500  # log lines shown in the panel; the download has them all
SCROLL_TO_EVENT = (
    "setTimeout(() => {{ const row = document.getElementById({target}); "
    "if (row) {{ row.scrollIntoView({{block: 'center'}}); }} }}, 80)"
)


def dataset_rows(found: list[dict[str, Any]]) -> list[DatasetRow]:
    return [
        DatasetRow(
            access=row["access"],
            name=row["name"],
            namespace=row["namespace"],
            href=f"{routes.CATALOG}?dataset={row['dataset_id']}" if row["dataset_id"] else "",
        )
        for row in found
    ]


def task_spec(run: dict[str, Any], key: str) -> str:
    """The task's spec as submitted, pretty JSON."""
    spec = next((t for t in (run.get("spec") or {}).get("tasks", []) if t.get("key") == key), None)
    return json.dumps(spec, indent=2, sort_keys=True, default=str) if spec is not None else ""


class TaskPanelState(RunDetailState):
    """The task panel of the run page."""

    panel_open: rx.Field[bool] = rx.field(False)
    panel_key: rx.Field[str] = rx.field("")
    panel_task: rx.Field[PanelTask] = rx.field(default_factory=PanelTask)
    panel_error: rx.Field[str] = rx.field("")
    panel_attempt: rx.Field[str] = rx.field("")  # the attempt whose log is shown ("" while none)
    panel_attempts: rx.Field[list[AttemptRow]] = rx.field(default_factory=list)
    panel_events: rx.Field[list[EventRow]] = rx.field(default_factory=list)
    panel_events_note: rx.Field[str] = rx.field("")
    panel_first_error: rx.Field[int] = rx.field(0)  # the attempt's first error event (0: none)
    panel_artifacts: rx.Field[list[RunArtifactRow]] = rx.field(default_factory=list)
    panel_datasets: rx.Field[list[DatasetRow]] = rx.field(default_factory=list)
    panel_loading: rx.Field[bool] = rx.field(False)

    _panel_task_id: str = ""

    @rx.var
    def panel_attempt_numbers(self) -> list[str]:
        return [str(row.attempt) for row in self.panel_attempts]

    @background
    async def open_from_address(self) -> AsyncIterator[Any]:
        """Opens the panel named by ``?task=`` (and ``&attempt=``) when the page loads."""
        async with self:
            query = page_url(self).query_parameters
            key, attempt = query.get("task", ""), query.get("attempt", "")
            if not key:  # another run, or Back to the page without a panel
                self.panel_open, self.panel_key = False, ""
                self._address_task, self._address_attempt = "", 0
        if key:
            yield TaskPanelState.open_task(key, attempt)

    def _pick(self, figure: str, points: list[dict[str, Any]]) -> Any:
        """A click on the DAG (a task's node) or the Gantt (an attempt's bar) opens that task's panel."""
        traces = (self.dag if figure == "dag" else self.gantt).data
        for point in points or []:
            curve = point.get("curveNumber")
            if not isinstance(curve, int) or not 0 <= curve < len(traces):
                continue
            meta = traces[curve].meta
            if not isinstance(meta, dict):
                continue
            if "task_keys" in meta:
                index = point.get("pointIndex")
                if isinstance(index, int) and 0 <= index < len(meta["task_keys"]):
                    return TaskPanelState.open_task(str(meta["task_keys"][index]), "")
            elif "task_key" in meta:
                return TaskPanelState.open_task(str(meta["task_key"]), str(meta["attempt"]))
        return None

    @handler
    def pick_task_node(self, points: list[dict[str, Any]]) -> Any:
        """A click on a node of the task graph."""
        return self._pick("dag", points)

    @handler
    def pick_attempt_bar(self, points: list[dict[str, Any]]) -> Any:
        """A click on an attempt's bar in the timeline."""
        return self._pick("gantt", points)

    @handler
    def open_attempt(self, key: str, attempt: int) -> Any:
        """An attempt row: its task's panel, on that attempt."""
        return TaskPanelState.open_task(key, str(attempt))

    @background
    async def open_task(self, key: str, attempt: str = "") -> AsyncIterator[Any]:
        """Open the panel on a task (its latest attempt unless one is named)."""
        async with self:
            run = page_id(self)
            self.panel_open, self.panel_loading, self.panel_key = True, True, key
            self.panel_error = ""
        if run is None:
            return
        message = ""
        try:
            await self._load_panel(run, key, attempt)
        except Exception as exc:
            message = problem_text(exc)
        async with self:
            self.panel_loading = False
            self.panel_error = message
            self._address_task, self._address_attempt = key, int(self.panel_attempt or 0)
            address = self._address(str(run))
        yield rx.call_script(replace_address(address))

    async def _load_panel(self, run_id: uuid.UUID, key: str, attempt: str) -> None:
        signed = await self.signed_in()
        if signed is None:
            return
        async with as_user(signed.principal) as conn:
            run = await runs.get_run(conn, run_id=run_id)
            task = next((t for t in run["tasks"] if t["key"] == key), None)
            if task is None:
                raise ValueError(f"this run has no task {key!r}")
            numbers = [a["attempt"] for a in task["attempts"]]
            chosen = int(attempt) if attempt.isdigit() and int(attempt) in numbers else (numbers[-1] if numbers else 0)
            # A reused outcome lives in the earlier run: its artifacts and datasets are that task's.
            source = task.get("reused_from_task") or task["id"]
            source_run = task.get("reused_from_run") or run_id
            found = await artifacts.list_run_artifacts(conn, run_id=source_run, task_id=source)
            datasets = await task_detail.task_datasets(conn, run_id=source_run, task_id=source)
            log, first_error = await _attempt_events(conn, run_id, task["id"], chosen)
        order = {key: 0}
        async with self:
            self._panel_task_id = str(task["id"])
            self.panel_task = PanelTask(
                engine=task["engine"],
                status=task["status"],
                spec=task_spec(run, key),
                reused_href=routes.run_detail(str(source_run), task=key) if source != task["id"] else "",
            )
            flat = [{**a, "task_key": key, "executor": a["executor_name"]} for a in task["attempts"]]
            self.panel_attempts = attempt_rows(flat, order, now=datetime.now(UTC))
            self.panel_attempt = str(chosen) if chosen else ""
            self.panel_artifacts = artifact_rows(found)
            self.panel_datasets = dataset_rows(datasets)
            self._show_panel_events(log, first_error)

    def _show_panel_events(self, log: list[dict[str, Any]], first_error: int) -> None:
        self.panel_events = [event_row(row) for row in log]
        self.panel_first_error = first_error
        self.panel_events_note = (
            f"the newest {PANEL_EVENTS} lines; download the log for all of them" if len(log) == PANEL_EVENTS else ""
        )

    @background
    async def show_attempt(self, attempt: str) -> AsyncIterator[Any]:
        """Show another attempt's log."""
        async with self:
            key = self.panel_key
        yield TaskPanelState.open_task(key, attempt)

    @background
    async def jump_to_first_error(self) -> AsyncIterator[Any]:
        """Show the log from the attempt's first error on, and scroll to it."""
        async with self:
            run, first = page_id(self), self.panel_first_error
            task_id, attempt = self._panel_task_id, self.panel_attempt
        signed = await self.signed_in()
        if run is None or not first or not task_id or signed is None:
            return
        async with as_user(signed.principal) as conn:
            page = await events.list_events(
                conn, run_id=run, task_id=uuid.UUID(task_id), attempt=int(attempt) if attempt else None,
                after_id=first - 1, limit=PANEL_EVENTS,
            )  # fmt: skip
        async with self:
            self._show_panel_events(page, first)
            self.panel_events_note = "from the first error on; download the log for all of it"
        yield rx.call_script(SCROLL_TO_EVENT.format(target=json.dumps(f"panel-event-{first}")))

    @handler
    def download_log(self) -> Any:
        """The attempt's whole log as a file, through the HTTP API."""
        run = page_id(self)
        if run is None or not self.panel_key:
            return None
        attempt = f"?attempt={self.panel_attempt}" if self.panel_attempt else ""
        url = f"/api/v1/runs/{run}/tasks/{quote(self.panel_key, safe='')}/log{attempt}"
        suffix = f"-attempt-{self.panel_attempt}" if self.panel_attempt else ""
        return rx.call_script(download_script(url, f"{self.panel_key}{suffix}.log"))

    @handler
    def set_panel_open(self, is_open: bool) -> Any:
        """Close (or reopen) the panel; the address forgets the task when it closes."""
        self.panel_open = is_open
        if is_open:
            return None
        self.panel_key = ""
        self._address_task, self._address_attempt = "", 0
        return self._share_address()


async def _attempt_events(
    conn: AsyncConnection, run_id: uuid.UUID, task_id: uuid.UUID, attempt: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest lines of the attempt's log, and the id of its first error event (0 when none)."""
    number = attempt or None
    log = await events.list_events(conn, run_id=run_id, task_id=task_id, attempt=number, limit=PANEL_EVENTS)
    errors = await events.list_events(
        conn, run_id=run_id, task_id=task_id, attempt=number, min_level="error", after_id=0, limit=1
    )
    return log, int(errors[0]["id"]) if errors else 0
