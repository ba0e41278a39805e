"""Experiments: the project's MLflow experiments (search, run counts, last run), and one experiment's runs
as a table with chosen metric/param columns, MLflow search filter, sort, keyset pages, a metric chart of
selected runs, a compare view (params diff, overlaid curves, summary) and run detail."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.blocks import searched_heading
from control_room.components.dialogs import panel_dialog
from control_room.components.forms import error_callout
from control_room.components.headings import titled_card
from control_room.components.layout import layout
from control_room.components.paging import keyset_pager
from control_room.components.table_rows import body_row, number_cell, text_cell
from control_room.components.tables import data_table, opener_cell
from control_room.state.ml import ExperimentsState, ExperimentState
from control_room.state.rows import CompareParam, ExperimentRow, KeyValue, MlflowRunRow

PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
LINKED: Any = ExperimentsState.linked_experiments


def _experiment_row(row: ExperimentRow) -> rx.Component:
    return body_row(
        rx.table.cell(rx.link(row.name, href=f"{routes.ML_EXPERIMENTS}/" + row.id, class_name="experiment-name")),
        number_cell(row.runs),
        text_cell(row.last_run, size="2"),
        rx.table.cell(rx.cond(row.last_status != "", rx.badge(row.last_status, variant="soft", size="1"))),
        class_name="experiment-row",
    )


def _linked_row(row: MlflowRunRow) -> rx.Component:
    return body_row(
        rx.table.cell(rx.link(row.name, href=f"{routes.ML_EXPERIMENTS}/" + LINKED[row.run_id].to(str)
                              + "?mlflow_run=" + row.run_id)),
        text_cell(row.lakehouse_task_key, size="2"),
        rx.table.cell(rx.badge(row.status, variant="soft", size="1")),
        text_cell(row.started, size="2"),
        class_name="linked-mlflow-run",
    )  # fmt: skip


@layout(route=routes.ML_EXPERIMENTS, title="Experiments", on_load=ExperimentsState.open_page)
def experiments_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        searched_heading("Experiments", ExperimentsState, "Search experiments", "experiments-search", "320px"),
        error_callout(ExperimentsState.error, width="100%"),
        rx.cond(ExperimentsState.linked_run != "", titled_card(
            rx.hstack(rx.text("MLflow runs logged by run ", size="2", weight="medium"),
                      rx.link(rx.code(ExperimentsState.linked_run), href="/runs/" + ExperimentsState.linked_run),
                      spacing="1", align="center"),
            rx.table.root(rx.table.body(rx.foreach(ExperimentsState.linked, _linked_row)), size="1", width="100%"),
            rx.cond(ExperimentsState.linked.length() == 0,
                    rx.text("That run logged nothing to MLflow.", size="2", color_scheme="gray")),
            element_id="linked-mlflow-runs")),
        data_table(("Experiment", "Runs", "Last run", "Last status"),
                   rx.foreach(ExperimentsState.rows, _experiment_row), "experiments-table", plain=True),
        rx.cond(ExperimentsState.loaded & (ExperimentsState.rows.length() == 0) & (ExperimentsState.error == ""),
                rx.text("No experiment yet: a python task that logs with executor_agent.mlflow_run creates one.",
                        color_scheme="gray", id="experiments-empty")),
        keyset_pager(ExperimentsState, "experiments"),
        spacing="4", width="100%",
    )  # fmt: skip
    return content


# One experiment ------------------------------------------------------------------------------------


def _run_row(row: MlflowRunRow) -> rx.Component:
    return body_row(
        rx.table.cell(rx.checkbox(checked=row.selected, on_change=lambda _v: ExperimentState.toggle_run(row.run_id),
                                  class_name="run-select")),
        opener_cell(row.name, ExperimentState.open_run(row.run_id), "mlflow-run-name"),
        rx.table.cell(rx.badge(row.status, variant="soft", size="1")),
        text_cell(row.started, size="1"),
        rx.foreach(row.cells, lambda value: number_cell(value, size="2")),
        rx.table.cell(rx.cond(row.lakehouse_run_id != "",
                              rx.link(row.lakehouse_task_key, href="/runs/" + row.lakehouse_run_id, size="2",
                                      class_name="lakehouse-run-link"),
                              rx.text("—", size="2", color_scheme="gray"))),
        class_name="mlflow-run-row",
    )  # fmt: skip


def _column_chooser() -> rx.Component:
    chooser: rx.Component = rx.popover.root(
        rx.popover.trigger(rx.button(rx.icon("columns-3", size=14), "Columns", variant="soft", size="2",
                                     id="columns-button")),
        rx.popover.content(rx.vstack(rx.foreach(ExperimentState.all_columns, lambda column: rx.checkbox(
            column, checked=ExperimentState.columns.contains(column),
            on_change=lambda _v: ExperimentState.toggle_column(column), size="1")), spacing="1")),
    )  # fmt: skip
    return chooser


def _compare_table(rows: Any, title: str, ident: str) -> rx.Component:
    def row(entry: CompareParam) -> rx.Component:
        return body_row(
            text_cell(entry.name, weight=rx.cond(entry.differs, "bold", "regular"), size="2"),
            rx.foreach(entry.cells, lambda value: number_cell(value, size="2")),
            background=rx.cond(entry.differs, rx.color("amber", 2), "transparent"),
        )

    table: rx.Component = rx.vstack(
        rx.heading(title, size="3"),
        rx.table.root(
            rx.table.header(rx.table.row(rx.table.column_header_cell(""),
                                         rx.foreach(ExperimentState.compare_names,
                                                    lambda name: rx.table.column_header_cell(name)))),
            rx.table.body(rx.foreach(rows, row)), size="1", width="100%", id=ident,
        ),
        spacing="2", width="100%",
    )  # fmt: skip
    return table


def _compare_dialog() -> rx.Component:
    return panel_dialog(
        (rx.dialog.title("Compare runs"), rx.spacer()),
        rx.hstack(rx.text("Metric", size="2"),
                  rx.select(ExperimentState.compare_metric_names, value=ExperimentState.compare_metric,
                            on_change=ExperimentState.set_compare_metric, size="1", id="compare-metric"),
                  spacing="2", align="center"),
        rx.plotly.basic(data=ExperimentState.compare_chart, config=PLOT_CONFIG, width="100%", id="compare-chart"),
        rx.grid(_compare_table(ExperimentState.compare_params, "Params (differences highlighted)", "compare-params"),
                _compare_table(ExperimentState.compare_metrics, "Metrics: last (min, max)", "compare-metrics"),
                columns="2", spacing="4", width="100%"),
        is_open=ExperimentState.compare_open, on_open_change=ExperimentState.set_compare_open,
        max_width="1100px", width="94vw", element_id="compare-dialog",
    )  # fmt: skip


def _fact(fact: KeyValue) -> rx.Component:
    return body_row(text_cell(fact.key, size="1", color_scheme="gray"), text_cell(fact.value, size="2"))


def _run_dialog() -> rx.Component:
    return panel_dialog(
        (rx.dialog.title(ExperimentState.detail_name, id="mlflow-run-title"), rx.spacer()),
        rx.cond(ExperimentState.detail_lakehouse_run != "",
                rx.link("Open the control-room run that logged it",
                        href="/runs/" + ExperimentState.detail_lakehouse_run, id="mlflow-run-origin")),
        rx.table.root(rx.table.body(rx.foreach(ExperimentState.detail_facts, _fact)), size="1", width="100%",
                      id="mlflow-run-facts"),
        rx.heading("Artifacts", size="3", margin_top="12px"),
        rx.vstack(rx.foreach(ExperimentState.detail_artifacts, lambda path: rx.code(path, variant="ghost")),
                  spacing="1", id="mlflow-run-artifacts"),
        is_open=ExperimentState.detail_open, on_open_change=ExperimentState.set_detail_open,
        max_width="760px", width="92vw", element_id="mlflow-run-dialog",
    )  # fmt: skip


@layout(route=routes.ML_EXPERIMENT, title="Experiment", on_load=ExperimentState.open_page)
def experiment_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        rx.hstack(
            rx.link(rx.icon("arrow-left", size=16), href=routes.ML_EXPERIMENTS),
            rx.heading(ExperimentState.experiment_name, size="6", id="experiment-name"),
            rx.spacer(),
            rx.button("Compare selected", on_click=ExperimentState.compare, disabled=~ExperimentState.can_compare,
                      id="compare-button"),
            width="100%", align="center", spacing="3",
        ),
        error_callout(ExperimentState.error, width="100%"),
        rx.hstack(
            rx.input(placeholder="metrics.auc > 0.8 and params.alpha = '0.01'", value=ExperimentState.filter_text,
                     on_change=ExperimentState.set_filter_text, width="420px", id="runs-filter"),
            rx.button("Filter", on_click=ExperimentState.apply_filter, variant="soft", id="runs-filter-apply"),
            rx.select(ExperimentState.order_choices, value=ExperimentState.order_by,
                      on_change=ExperimentState.set_order_by, id="runs-order"),
            _column_chooser(),
            spacing="2", align="center", width="100%", wrap="wrap",
        ),
        rx.table.root(
            rx.table.header(rx.table.row(
                rx.table.column_header_cell(""), rx.table.column_header_cell("Run"),
                rx.table.column_header_cell("Status"), rx.table.column_header_cell("Started"),
                rx.foreach(ExperimentState.columns, lambda c: rx.table.column_header_cell(c)),
                rx.table.column_header_cell("Task"))),
            rx.table.body(rx.foreach(ExperimentState.runs, _run_row)),
            width="100%", id="mlflow-runs-table",
        ),
        keyset_pager(ExperimentState, "runs"),
        titled_card(
            rx.hstack(rx.text("Metric per step", size="2", weight="medium"),
                      rx.select(ExperimentState.metric_names, value=ExperimentState.metric,
                                on_change=ExperimentState.set_metric, size="1", id="chart-metric"),
                      rx.text("selected runs (or the first five)", size="1", color_scheme="gray"),
                      spacing="2", align="center"),
            rx.plotly.basic(data=ExperimentState.chart, config=PLOT_CONFIG, width="100%", id="metric-chart"),
        ),
        _compare_dialog(),
        _run_dialog(),
        spacing="4", width="100%",
    )  # fmt: skip
    return content
