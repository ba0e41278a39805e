"""ML pages: the project's MLflow experiments, one experiment's runs (columns, filter, sort, keyset pages,
metric charts, compare of 2-10 runs, run detail) and the model registry with its aliases."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import plotly.graph_objects as go
import reflex as rx
from psycopg import AsyncConnection

from control_room import routes
from control_room.components.ml_figures import metric_curves_figure
from control_room.services import ml_tracking
from control_room.services.pagination import Page
from control_room.state.base import SessionState, SignedIn
from control_room.state.events import background, exclusive, handler, page_tail, page_url, setter
from control_room.state.paging import KeysetPages, filter_setter
from control_room.state.rows import (
    AliasForm,
    CompareParam,
    ExperimentRow,
    KeyValue,
    MlflowRunRow,
    ModelRow,
    ModelVersionRow,
    with_field,
)

PAGE_SIZE = 25
MAX_COLUMNS = 8
ORDER_CHOICES = ("start_time DESC", "start_time ASC")
ALIASES = ("champion", "challenger")
T = TypeVar("T")


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "—"


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def experiment_row(row: dict[str, Any]) -> ExperimentRow:
    runs = f"{row['runs']}+" if row["runs_capped"] else str(row["runs"])
    return ExperimentRow(row["id"], row["name"], runs, _when(row["last_run_at"]), row["last_run_status"] or "")


def run_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every metric and param the runs have, metrics first, as MLflow search keys."""
    metrics = sorted({f"metrics.{k}" for row in rows for k in row["metrics"]})
    params = sorted({f"params.{k}" for row in rows for k in row["params"]})
    return metrics + params


def default_columns(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """What the table shows first: every metric, and the params whose value differs between the runs."""
    varying = [c for c in columns if c.startswith("metrics.") or len({cell(r, c) for r in rows}) > 1]
    return varying[:MAX_COLUMNS]


def cell(row: dict[str, Any], column: str) -> str:
    """One column's value of a run (``metrics.x`` or ``params.y``)."""
    kind, _, key = column.partition(".")
    return _number((row["metrics"] if kind == "metrics" else row["params"]).get(key))


def mlflow_run_row(row: dict[str, Any], columns: list[str], selected: set[str]) -> MlflowRunRow:
    return MlflowRunRow(
        run_id=row["run_id"], name=row["run_name"], status=row["status"], started=_when(row["start_time"]),
        cells=[cell(row, c) for c in columns], lakehouse_run_id=row["lakehouse_run_id"] or "",
        lakehouse_task_key=row["lakehouse_task_key"] or "", selected=row["run_id"] in selected,
    )  # fmt: skip


def version_row(row: dict[str, Any]) -> ModelVersionRow:
    signature = row["signature"]
    return ModelVersionRow(
        version=row["version"], aliases=row["aliases"], status=row["status"], run_id=row["run_id"] or "",
        run_name=row["run_name"], lakehouse_run_id=row["lakehouse_run_id"] or "",
        run_href=routes.ml_experiment(row["experiment_id"], mlflow_run=row["run_id"]) if row["experiment_id"] else "",
        metrics=", ".join(f"{k} {_number(v)}" for k, v in sorted(row["metrics"].items())),
        signature=f"{signature['inputs']} → {signature['outputs']}" if signature else "no signature",
        created=_when(row["created_at"]),
    )  # fmt: skip


class MlBase(SessionState):
    """The base of the endpoints page's state (state/serving.py): error, loaded, and ``_read`` as a tuple."""

    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)

    async def _read(self, read: Callable[[AsyncConnection, SignedIn], Awaitable[T]]) -> tuple[T | None, str, bool]:
        """(value, error, signed in?): ``_read_as_user`` as a tuple."""
        reading = await self._read_as_user(read)
        return reading.value, reading.error, reading.signed is not None


class ExperimentsState(KeysetPages, SessionState):
    """The project's experiments (search, keyset pages), and the MLflow runs of one control-room run."""

    rows: rx.Field[list[ExperimentRow]] = rx.field(default_factory=list)
    text: rx.Field[str] = rx.field("")
    linked_run: rx.Field[str] = rx.field("")
    linked: rx.Field[list[MlflowRunRow]] = rx.field(default_factory=list)
    linked_experiments: rx.Field[dict[str, str]] = rx.field(default_factory=dict)

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """First page; ``?run=`` also lists the MLflow runs that control-room run logged."""
        async with self:
            self.linked_run = page_url(self).query_parameters.get("run", "")
            self._reset_pages()
        async for event in self._list():
            yield event

    async def _list(self) -> AsyncIterator[Any]:
        async with self:
            text, linked_run = self.text, self.linked_run
        linked: list[dict[str, Any]] = []

        async def read(conn: AsyncConnection, signed: SignedIn, cursor: str | None) -> Page:
            linked.extend(await ml_tracking.runs_of_lakehouse_run(conn, run_id=linked_run) if linked_run else [])
            return await ml_tracking.list_experiments(
                conn, project=str(signed.project_id), text=text or None, cursor=cursor, limit=PAGE_SIZE
            )

        def show(rows: list[dict[str, Any]]) -> None:
            self.rows = [experiment_row(r) for r in rows]
            self.linked = [mlflow_run_row(r, [], set()) for r in linked]
            self.linked_experiments = {r["run_id"]: r["experiment_id"] for r in linked}

        async for event in self._load_page(read, show):
            yield event

    @handler
    def set_text(self, value: str) -> Any:
        """Search experiments by name."""
        self.text = value[:200]
        return self._first_page()


class ExperimentState(KeysetPages, SessionState):
    """One experiment: its runs as a table, a metric chart of selected runs, compare and run detail."""

    experiment_name: rx.Field[str] = rx.field("")
    runs: rx.Field[list[MlflowRunRow]] = rx.field(default_factory=list)
    all_columns: rx.Field[list[str]] = rx.field(default_factory=list)
    columns: rx.Field[list[str]] = rx.field(default_factory=list)
    filter_text: rx.Field[str] = rx.field("")
    order_by: rx.Field[str] = rx.field("start_time DESC")
    selected: rx.Field[list[str]] = rx.field(default_factory=list)
    metric: rx.Field[str] = rx.field("")
    chart: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    compare_open: rx.Field[bool] = rx.field(False)
    compare_names: rx.Field[list[str]] = rx.field(default_factory=list)
    compare_params: rx.Field[list[CompareParam]] = rx.field(default_factory=list)
    compare_metrics: rx.Field[list[CompareParam]] = rx.field(default_factory=list)
    compare_chart: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    compare_metric: rx.Field[str] = rx.field("")
    compare_metric_names: rx.Field[list[str]] = rx.field(default_factory=list)
    detail_open: rx.Field[bool] = rx.field(False)
    detail_name: rx.Field[str] = rx.field("")
    detail_lakehouse_run: rx.Field[str] = rx.field("")
    detail_facts: rx.Field[list[KeyValue]] = rx.field(default_factory=list)
    detail_artifacts: rx.Field[list[str]] = rx.field(default_factory=list)

    _experiment_id: str = ""
    _raw: list[dict[str, Any]] = []
    _compare_curves: dict[str, Any] = {}
    _compare_labels: dict[str, str] = {}

    @rx.var
    def metric_names(self) -> list[str]:
        """Metrics the chart can show."""
        return [c.removeprefix("metrics.") for c in self.all_columns if c.startswith("metrics.")]

    @rx.var
    def order_choices(self) -> list[str]:
        """Sort keys: start time, then each metric and param both ways."""
        keys = [f"{c} DESC" for c in self.all_columns] + [f"{c} ASC" for c in self.all_columns]
        return list(ORDER_CHOICES) + keys

    @rx.var
    def can_compare(self) -> bool:
        """2 to 10 runs selected."""
        return 2 <= len(self.selected) <= ml_tracking.MAX_COMPARE

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """The experiment named by the route; ``?mlflow_run=`` opens that run's detail."""
        async with self:
            self._experiment_id = page_tail(self)
            wanted = page_url(self).query_parameters.get("mlflow_run", "")
            self.selected, self.columns, self.compare_open, self.detail_open = [], [], False, False
            self.chart = go.Figure()
            self._reset_pages()
        async for event in self._list():
            yield event
        if wanted:
            yield ExperimentState.open_run(wanted)

    async def _list(self) -> AsyncIterator[Any]:
        async with self:
            experiment_id, filter_text, order_by = self._experiment_id, self.filter_text, self.order_by
        header: dict[str, Any] = {}

        async def read(conn: AsyncConnection, signed: SignedIn, cursor: str | None) -> Page:
            found, rows, next_cursor = await ml_tracking.experiment_runs(
                conn, project=str(signed.project_id), experiment_id=experiment_id, filter_string=filter_text or None,
                order_by=order_by, cursor=cursor, limit=PAGE_SIZE,
            )  # fmt: skip
            header.update(found)
            return rows, next_cursor

        def show(rows: list[dict[str, Any]]) -> None:
            if not header:
                return  # the read failed: keep what the table showed, beside the error
            self.experiment_name = header["name"]
            self._raw = rows
            self.all_columns = sorted(set(self.all_columns) | set(run_columns(rows)))
            if not self.columns:
                self.columns = default_columns(rows, self.all_columns)
            if not self.metric and self.metric_names:
                self.metric = "auc" if "auc" in self.metric_names else self.metric_names[0]
            self._rebuild_rows()

        async for event in self._load_page(read, show):
            yield event
        yield ExperimentState.refresh_chart

    def _rebuild_rows(self) -> None:
        chosen = set(self.selected)
        self.runs = [mlflow_run_row(r, self.columns, chosen) for r in self._raw]

    set_filter_text = setter("filter_text", longest=2000)

    @handler
    def apply_filter(self) -> Any:
        """Search with MLflow's syntax (e.g. ``metrics.auc > 0.8``)."""
        return self._first_page()

    set_order_by = filter_setter("order_by")

    @handler
    def toggle_column(self, column: str) -> None:
        """Show or hide a metric/param column."""
        self.columns = (
            [c for c in self.columns if c != column] if column in self.columns
            else [c for c in self.all_columns if c in {*self.columns, column}]
        )  # fmt: skip
        self._rebuild_rows()

    @handler
    def toggle_run(self, run_id: str) -> Any:
        """Select a run for the chart and compare (at most 10)."""
        if run_id in self.selected:
            self.selected = [r for r in self.selected if r != run_id]
        elif len(self.selected) < ml_tracking.MAX_COMPARE:
            self.selected = [*self.selected, run_id]
        self._rebuild_rows()
        return ExperimentState.refresh_chart

    @handler
    def set_metric(self, value: str) -> Any:
        self.metric = value
        return ExperimentState.refresh_chart

    @background
    async def refresh_chart(self) -> None:
        """Curves of the chosen metric for the selected runs (the page's first runs when none is selected)."""
        async with self:
            run_ids = list(self.selected) or [r["run_id"] for r in self._raw[:5]]
            metric = self.metric
            names = {r["run_id"]: r["run_name"] for r in self._raw}
        if not run_ids or not metric:
            return

        async def read(conn: AsyncConnection, signed: SignedIn) -> Any:
            return await ml_tracking.metric_histories(conn, project=str(signed.project_id), run_ids=run_ids,
                                                      keys=[metric])  # fmt: skip

        reading = await self._read_as_user(read)
        value, error = reading.value, reading.error
        async with self:
            if value is not None and metric == self.metric:
                self.chart = metric_curves_figure({r: v.get(metric, []) for r, v in value.items()}, names, metric)
            self.error = error or self.error

    @background
    async def compare(self) -> None:
        """Open the compare view of the selected runs."""
        async with self:
            run_ids = list(self.selected)

        async def read(conn: AsyncConnection, signed: SignedIn) -> Any:
            return await ml_tracking.compare_runs(conn, project=str(signed.project_id), run_ids=run_ids)

        def show(value: Any) -> None:
            runs = value["runs"]
            self.compare_names = [r["run_name"] for r in runs]
            self.compare_params = [
                CompareParam(p["name"], [v if v is not None else "—" for v in p["values"]], p["differs"])
                for p in value["params"]
            ]  # fmt: skip
            self.compare_metrics = [
                CompareParam(m["name"], [f"{_number(s['last'])} (min {_number(s['min'])}, max {_number(s['max'])})"
                                         for s in m["runs"]], len({s["last"] for s in m["runs"]}) > 1)
                for m in value["metrics"]
            ]  # fmt: skip
            self._compare_curves = value["curves"]
            self._compare_labels = {r["run_id"]: r["run_name"] for r in runs}
            self.compare_metric_names = [m["name"] for m in value["metrics"]]
            self.compare_metric = self.metric if self.metric in self.compare_metric_names else (
                self.compare_metric_names[0] if self.compare_metric_names else "")  # fmt: skip
            self._draw_compare()
            self.compare_open = True

        await self._read_shown(read, show)

    def _draw_compare(self) -> None:
        metric = self.compare_metric
        curves = {run_id: per_metric.get(metric, []) for run_id, per_metric in self._compare_curves.items()}
        self.compare_chart = metric_curves_figure(curves, self._compare_labels, metric, height=300)

    set_compare_metric = setter("compare_metric", then="_draw_compare")
    set_compare_open = setter("compare_open")
    set_detail_open = setter("detail_open")

    @background
    async def open_run(self, run_id: str) -> AsyncIterator[Any]:
        """Run detail: params, metrics, tags, artifacts and the control-room run it came from."""

        async def read(conn: AsyncConnection, signed: SignedIn) -> Any:
            return await ml_tracking.get_run(conn, project=str(signed.project_id), run_id=run_id)

        def show(value: Any) -> None:
            facts = [KeyValue("status", value["status"]), KeyValue("started", _when(value["start_time"])),
                     KeyValue("run id", value["run_id"])]  # fmt: skip
            facts += [KeyValue(f"param {k}", v) for k, v in sorted(value["params"].items())]
            facts += [KeyValue(f"metric {k}", _number(v)) for k, v in sorted(value["metrics"].items())]
            facts += [KeyValue(f"tag {k}", v) for k, v in sorted(value["tags"].items())]
            self.detail_name = value["run_name"]
            self.detail_lakehouse_run = value["lakehouse_run_id"] or ""
            self.detail_facts = facts
            self.detail_artifacts = [a["path"] + ("/" if a["is_dir"] else "") for a in value["artifacts"]]
            self.detail_open = True

        await self._read_shown(read, show)
        yield


class ModelsState(KeysetPages, SessionState):
    """Registered models (keyset pages), the selected model's versions, and alias changes."""

    models: rx.Field[list[ModelRow]] = rx.field(default_factory=list)
    model: rx.Field[str] = rx.field("")
    model_description: rx.Field[str] = rx.field("")
    model_aliases: rx.Field[list[KeyValue]] = rx.field(default_factory=list)
    versions: rx.Field[list[ModelVersionRow]] = rx.field(default_factory=list)
    form: rx.Field[AliasForm] = rx.field(default_factory=AliasForm)
    message: rx.Field[str] = rx.field("")
    alias_error: rx.Field[str] = rx.field("")
    saving: rx.Field[bool] = rx.field(False)

    @rx.var
    def version_choices(self) -> list[str]:
        return [v.version for v in self.versions]

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """First page; ``?model=`` opens that model."""
        async with self:
            wanted = page_url(self).query_parameters.get("model", "")
            self._reset_pages()
        async for event in self._list():
            yield event
        async with self:
            first = wanted or (self.models[0].name if self.models else "")
        if first:
            yield ModelsState.open_model(first)

    async def _list(self) -> AsyncIterator[Any]:
        async def read(conn: AsyncConnection, signed: SignedIn, cursor: str | None) -> Page:
            return await ml_tracking.list_models(conn, project=str(signed.project_id), cursor=cursor, limit=PAGE_SIZE)

        def show(rows: list[dict[str, Any]]) -> None:
            self.models = [
                ModelRow(m["name"], ", ".join(f"@{a} v{v}" for a, v in sorted(m["aliases"].items())) or "—",
                         m["latest_version"] or "—", _when(m["updated_at"]), m["description"])
                for m in rows
            ]  # fmt: skip

        async for event in self._load_page(read, show):
            yield event

    @background
    async def open_model(self, name: str) -> AsyncIterator[Any]:
        """A model's versions with their runs, metrics, signatures and aliases."""

        async def read(conn: AsyncConnection, signed: SignedIn) -> Any:
            return await ml_tracking.get_model(conn, project=str(signed.project_id), name=name)

        def show(value: Any) -> None:
            self.model, self.model_description = value["name"], value["description"]
            self.model_aliases = [KeyValue(a, v) for a, v in sorted(value["aliases"].items())]
            self.versions = [version_row(v) for v in value["versions"]]
            if self.form.version not in self.version_choices:
                self.form = dataclasses.replace(self.form, version=self.versions[0].version if self.versions else "")

        await self._read_shown(read, show)
        yield

    @handler
    def set_form(self, field: str, value: str) -> None:
        """The alias, the version or the check metric (a metric name: trimmed, 250 characters at most)."""
        self.form = with_field(self.form, field, value.strip()[:250] if field == "gate_metric" else value)

    @background
    @exclusive("saving")
    async def save_alias(self) -> AsyncIterator[Any]:
        """Point the alias at the version (role-checked and audited by the service and SQL)."""
        async with self:
            self.message, self.alias_error = "", ""
            model, alias, version, gate = self.model, self.form.alias, self.form.version, self.form.gate_metric

        async def write(conn: AsyncConnection, signed: SignedIn) -> Any:
            return await ml_tracking.set_model_alias(
                conn, project=str(signed.project_id), name=model, alias=alias, version=version,
                gate_metric=gate or None,
            )  # fmt: skip

        reading = await self._read_as_user(write)
        value, error = reading.value, reading.error
        async with self:
            self.alias_error = error
            if value is not None:
                moved = f" (was v{value['previous_version']})" if value["previous_version"] else ""
                self.message = f"@{alias} now points at version {version}{moved}"
        if value is not None:
            yield ModelsState.open_model(model)
            yield ModelsState.load
