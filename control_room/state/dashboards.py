"""Dashboards page: a shipped template or a saved dashboard of the project, drawn on real data as the viewer,
with time range, filters (set by clicking a chart too), auto-refresh, and a YAML editor with preview."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room.components.dashboard_figures import chart_figure
from control_room.dashboards.loader import parse_dashboard, shipped_templates
from control_room.dashboards.models import DashboardFile
from control_room.services import dashboards
from control_room.services.auth import UserPrincipal
from control_room.state.base import ALL, SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, handler, page_url, setter
from control_room.state.formatting import cell_text
from control_room.state.rows import Choice, FilterChoice, Panel

TEMPLATE_PREFIX = "template:"
SAVED_PREFIX = "saved:"
MAX_TABLE_ROWS = 50
WAREHOUSE_POLL_S = 2.0
WAREHOUSE_WAIT_S = 180.0


async def draw(
    principal: UserPrincipal,
    spec: DashboardFile,
    *,
    project_id: uuid.UUID,
    time_range: str,
    filters: dict[str, str | None],
) -> list[list[Panel]]:
    """Every chart of the dashboard, row by row, each dataset read once as the user."""
    since, until = dashboards.window(time_range)
    scope = dashboards.DatasetScope(project_id, since, until, filters)
    async with as_user(principal) as conn:
        results = await dashboards.run_datasets(conn, spec, scope)
    rows: list[list[Panel]] = []
    for row in spec.rows():
        drawn: list[Panel] = []
        for chart in row:
            result = results[chart.dataset]
            panel = Panel(id=chart.id, title=chart.title, kind=chart.type, pending=result.pending)
            if result.error or result.note:
                panel.kind, panel.message = "message", result.error or result.note
            elif chart.type == "table":
                panel.columns = result.columns
                panel.rows = [[cell_text(v) for v in r] for r in result.rows[:MAX_TABLE_ROWS]]
            elif chart.type == "number":
                index = result.columns.index(chart.y[0]) if chart.y[0] in result.columns else -1
                panel.number = cell_text(result.rows[0][index]) if result.rows and index >= 0 else "—"
            else:
                panel.kind = "figure"
                grain = spec.datasets[chart.dataset].time_grain
                panel.figure = chart_figure(chart.type, result.columns, result.rows, x=chart.x, y=chart.y,
                                            color=chart.color, grain=grain,
                                            clickable=chart.cross_filter is not None)  # fmt: skip
                if not result.rows:
                    panel.message = "No data in this time range."
            drawn.append(panel)
        rows.append(drawn)
    return rows


class DashboardsState(SessionState):
    """The chosen dashboard, its controls, its drawn panels, and the editor."""

    choices: rx.Field[list[Choice]] = rx.field(default_factory=list)
    selected: rx.Field[str] = rx.field(f"{TEMPLATE_PREFIX}run-health")
    title: rx.Field[str] = rx.field("")
    description: rx.Field[str] = rx.field("")
    version_label: rx.Field[str] = rx.field("")
    time_range: rx.Field[str] = rx.field("7d")
    refresh_seconds: rx.Field[int] = rx.field(60)
    filters: rx.Field[list[FilterChoice]] = rx.field(default_factory=list)
    panels: rx.Field[list[list[Panel]]] = rx.field(default_factory=list)
    error: rx.Field[str] = rx.field("")
    is_loading: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")
    # Editor: the YAML being edited, its preview and where it is saved.
    editor_open: rx.Field[bool] = rx.field(False)
    source_yaml: rx.Field[str] = rx.field("")
    preview: rx.Field[list[list[Panel]]] = rx.field(default_factory=list)
    editor_error: rx.Field[str] = rx.field("")
    save_slug: rx.Field[str] = rx.field("")
    notice: rx.Field[str] = rx.field("")

    _source: str = ""
    _version: int = 0

    @signed_in_event
    async def open_page(self, signed: SignedIn) -> AsyncIterator[Any]:
        """List templates and saved dashboards; open ``?dashboard=`` (default: the run-health template)."""
        choices = [Choice(f"{TEMPLATE_PREFIX}{name}", f"Template · {t.dashboard.title}")
                   for name, t in shipped_templates().items()]  # fmt: skip
        error = ""
        if signed.project_id is not None:
            try:
                async with as_user(signed.principal) as conn:
                    saved = await dashboards.list_dashboards(conn, project_id=signed.project_id)
                choices += [Choice(f"{SAVED_PREFIX}{d.slug}", f"{d.title} (v{d.latest_version})") for d in saved]
            except Exception as exc:
                error = problem_text(exc)
        async with self:
            wanted = page_url(self).query_parameters.get("dashboard", "")
            self.choices, self.error = choices, error
            if wanted and any(c.key == wanted for c in choices):
                self.selected = wanted
            elif not any(c.key == self.selected for c in choices):
                self.selected = f"{TEMPLATE_PREFIX}run-health"
        yield DashboardsState.load_selected

    @signed_in_event
    async def load_selected(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Read the selected dashboard's YAML (template or saved), reset its controls, draw it."""
        if signed.project_id is None:
            return
        async with self:
            selected = self.selected
        version = 0
        try:
            if selected.startswith(SAVED_PREFIX):
                async with as_user(signed.principal) as conn:
                    saved = await dashboards.get_dashboard(conn, project_id=signed.project_id,
                                                           slug=selected.removeprefix(SAVED_PREFIX))  # fmt: skip
                source, version = saved["source_yaml"], int(saved["version"])
            else:
                source = dashboards.template_yaml(selected.removeprefix(TEMPLATE_PREFIX))
            spec = parse_dashboard(source)
        except Exception as exc:
            async with self:
                self.error, self.panels = problem_text(exc), []
            return
        async with self:
            self._source, self._version = source, version
            self.title, self.description = spec.title, spec.description
            self.version_label = f"version {version}" if version else "shipped template"
            self.time_range, self.refresh_seconds = spec.time_range, spec.refresh_seconds
            self.filters = [FilterChoice(f.name, f.label, ALL, [ALL, *f.options]) for f in spec.filters]
            self.error = ""
        yield DashboardsState.refresh

    @background
    async def refresh(self, _tick: str = "") -> None:
        """Read every dataset again and redraw (the time range, filters and auto-refresh call this)."""
        signed = await self.signed_in()
        if signed is None or signed.project_id is None:
            return
        async with self:
            if self.is_loading or not self._source:
                return
            self.is_loading = True
        deadline = time.monotonic() + WAREHOUSE_WAIT_S
        while True:
            async with self:
                source, time_range = self._source, self.time_range
                filters = {f.name: (None if f.value == ALL else f.value) for f in self.filters}
            try:
                panels = await draw(signed.principal, parse_dashboard(source), project_id=signed.project_id,
                                    time_range=time_range, filters=filters)  # fmt: skip
                error = ""
            except Exception as exc:
                panels, error = [], problem_text(exc)
            pending = any(panel.pending for row in panels for panel in row)
            async with self:
                self.panels, self.error = panels, error
                self.updated_at = dashboards.window("24h")[1].strftime("%H:%M:%S")
                if not pending or time.monotonic() > deadline:
                    self.is_loading = False
                    return
            # Warehouse datasets compute on an agent: draw again once their runs have moved on.
            await asyncio.sleep(WAREHOUSE_POLL_S)

    @handler
    def choose(self, key: str) -> Any:
        """Open another dashboard."""
        self.selected = key
        return DashboardsState.load_selected

    @handler
    def set_time_range(self, value: str) -> Any:
        self.time_range = value if value in dashboards.TIME_RANGES else "7d"
        return DashboardsState.refresh

    @handler
    def set_refresh(self, value: str) -> None:
        self.refresh_seconds = int(value) if value.isdigit() else 0

    @handler
    def set_filter(self, name: str, value: str) -> Any:
        """Set a filter ("all" clears it) and redraw."""
        self.filters = [dataclasses.replace(f, value=value) if f.name == name else f for f in self.filters]
        return DashboardsState.refresh

    @handler
    def cross_filter(self, chart_id: str, points: list[dict[str, Any]]) -> Any:
        """A click on a chart that cross-filters sets its filter to the clicked x value."""
        spec = parse_dashboard(self._source) if self._source else None
        chart = next((c for c in spec.charts if c.id == chart_id), None) if spec else None
        if chart is None or chart.cross_filter is None or not points:
            return None
        value = points[0].get("x") if chart.type != "pie" else points[0].get("label")
        if value is None:
            return None
        return DashboardsState.set_filter(chart.cross_filter, str(value))

    # Editor ----------------------------------------------------------------------------------------

    @handler
    def open_editor(self) -> None:
        """Edit a copy of the dashboard's YAML (saving a template clones it into the project)."""
        self.source_yaml = self._source
        base = self.selected.split(":", 1)[1]
        self.save_slug = base if self.selected.startswith(SAVED_PREFIX) else f"my-{base}"
        self.preview, self.editor_error, self.notice = [], "", ""
        self.editor_open = True

    set_editor_open = setter("editor_open")
    set_source_yaml = setter("source_yaml")

    @handler
    def set_save_slug(self, value: str) -> None:
        self.save_slug = value.strip().lower()[:63]

    @signed_in_event
    async def preview_yaml(self, signed: SignedIn) -> None:
        """Validate the edited YAML and draw it, without saving."""
        if signed.project_id is None:
            return
        async with self:
            source, time_range = self.source_yaml, self.time_range
        try:
            spec = parse_dashboard(source)
            panels = await draw(signed.principal, spec, project_id=signed.project_id, time_range=time_range,
                                filters={f.name: None for f in spec.filters})  # fmt: skip
            error = ""
        except Exception as exc:
            panels, error = [], problem_text(exc)
        async with self:
            self.preview, self.editor_error = panels, error

    @signed_in_event
    async def save(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Save the edited YAML as the project's dashboard (a new version when it changed)."""
        project_id = signed.project_id
        if project_id is None:
            return
        async with self:
            source, slug, selected, version = self.source_yaml, self.save_slug, self.selected, self._version
        template = selected.removeprefix(TEMPLATE_PREFIX) if selected.startswith(TEMPLATE_PREFIX) else None

        async def work() -> dict[str, Any]:
            async with as_user(signed.principal) as conn:
                return await dashboards.save_dashboard(
                    conn, project_id=project_id, slug=slug, source_yaml=source, template=template,
                    expected_version=version if selected == f"{SAVED_PREFIX}{slug}" else None,
                )  # fmt: skip

        saved = await self._dialog_sent(work, error="editor_error", dialog="editor_open")
        if saved is None:
            return
        async with self:
            self.selected = f"{SAVED_PREFIX}{slug}"
            self.notice = f"Saved {slug} as version {saved['version']}."
        yield DashboardsState.open_page
