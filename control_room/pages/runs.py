"""Runs: filter, sort and page through a project's runs; rows update live; operators submit runs."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import choice_select, dialog_actions, error_callout, field_label, form_dialog
from control_room.components.layout import layout, section_column
from control_room.components.live import live_intro, live_ticker
from control_room.components.notice import empty_state
from control_room.components.paging import newer_older_pager
from control_room.components.schema_form import task_form
from control_room.components.search import search_box
from control_room.components.status import STATUS_COLORS
from control_room.components.styles import BANNER, ROW
from control_room.components.table_rows import number_cell, status_cell, text_cell
from control_room.components.tables import data_table
from control_room.components.times import local_time
from control_room.services.ui_examples import EXAMPLES
from control_room.state.base import ALL, ENVIRONMENTS, SessionState
from control_room.state.runs import ENGINES, PAGE_SIZE, RunsLiveState, RunsState

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TRIGGERS = ("manual", "api", "schedule", "retry", "backfill", "promotion", "demo")
TIME_LABELS = {ALL: "Any time", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
SORT_LABELS = {"created": "Created", "started": "Started", "duration": "Duration"}


def _status_chip(status: str) -> rx.Component:
    chip: rx.Component = rx.button(
        status.capitalize(),
        size="1",
        radius="full",
        variant=rx.cond(RunsState.statuses.contains(status), "solid", "outline"),
        color_scheme=STATUS_COLORS[status],
        on_click=RunsState.toggle_status(status),
        id=f"status-filter-{status}",
    )
    return chip


def _select(name: str, value: rx.Var[str], options: dict[str, str], width: str) -> rx.Component:
    box: rx.Component = rx.select.root(
        rx.select.trigger(width=width, variant="surface"),
        rx.select.content(*(rx.select.item(label, value=key) for key, label in options.items())),
        value=value,
        on_change=lambda chosen: RunsState.set_filter(name, chosen),
        size="2",
        name=name,
    )
    return box


def _filters() -> rx.Component:
    bar: rx.Component = rx.vstack(
        rx.hstack(
            search_box(RunsState.text, RunsState.set_text, "Search name or run id…  ( / )", "runs-search", "280px",
                       size="2", data_search_box="runs"),
            _select("engine", RunsState.engine, {ALL: "All engines", **{e: e for e in ENGINES}}, "140px"),
            _select("trigger", RunsState.trigger, {ALL: "All triggers", **{t: t for t in TRIGGERS}}, "140px"),
            _select("time_range", RunsState.time_range, TIME_LABELS, "150px"),
            rx.spacer(),
            rx.text("Sort", size="2", color_scheme="gray"),
            rx.select.root(
                rx.select.trigger(width="120px", variant="surface", id="runs-sort"),
                rx.select.content(*(rx.select.item(label, value=key) for key, label in SORT_LABELS.items())),
                value=RunsState.sort,
                on_change=RunsState.set_sort,
                size="2",
            ),
            rx.tooltip(
                rx.icon_button(
                    rx.cond(RunsState.descending, rx.icon("arrow-down-wide-narrow", size=16),
                            rx.icon("arrow-up-narrow-wide", size=16)),
                    variant="surface", color_scheme="gray", on_click=RunsState.flip_direction, id="runs-direction",
                ),
                content=rx.cond(RunsState.descending, "Newest / longest first", "Oldest / shortest first"),
            ),
            **ROW,
            width="100%",
            wrap="wrap",
        ),
        rx.hstack(
            rx.cond(RunsState.job != "",
                    rx.badge(rx.icon("calendar-clock", size=12), "Job: ", RunsState.job_name,
                             rx.icon("x", size=12, cursor="pointer", on_click=RunsState.clear_job),
                             size="2", variant="soft", id="runs-job-filter")),
            rx.button(rx.icon("flame", size=12), "Failed in the last 24 h", size="1", radius="full",
                      color_scheme="red", variant=rx.cond(RunsState.failed_recently, "solid", "soft"),
                      on_click=RunsState.quick_failed_24h, id="quick-failed-24h"),
            rx.separator(orientation="vertical", size="1"),
            rx.button("All statuses", size="1", radius="full",
                      variant=rx.cond(RunsState.statuses.length() == 0, "solid", "outline"),
                      on_click=RunsState.clear_statuses, id="status-filter-all"),
            *(_status_chip(status) for status in STATUSES),
            **ROW,
            wrap="wrap",
        ),
        spacing="3",
        width="100%",
    )  # fmt: skip
    return bar


RUN_COLUMNS = ("", "Status", "Run", "Env", "Engines", "Trigger", "Tasks", "Created", "Started", "Ended",
               "Duration", "")  # fmt: skip


def _tag(tag: Any) -> rx.Component:
    chip: rx.Component = rx.badge(tag, size="1", variant="surface", color_scheme="gray", class_name="run-tag")
    return chip


def _row_actions(run: Any) -> rx.Component:
    # Row actions do not open the row: the click stops at the button.
    # Native tooltips (title): a Radix tooltip per button is three more components in each of the 50 rows,
    # re-rendered with them on every page.
    actions: rx.Component = rx.hstack(
        rx.link(rx.icon_button(rx.icon("arrow-up-right", size=14), size="1", variant="ghost", color_scheme="gray",
                               aria_label="Open", title="Open"),
                href=run.href, on_click=rx.stop_propagation),
        rx.cond(SessionState.can_operate & run.can_cancel,
                rx.icon_button(rx.icon("circle-stop", size=14), size="1", variant="ghost", color_scheme="red",
                               disabled=RunsState.is_acting, class_name="row-cancel",
                               on_click=[rx.stop_propagation, RunsState.cancel_one(run.id)],
                               aria_label="Cancel", title="Cancel run")),
        rx.cond(SessionState.can_operate & run.can_rerun,
                rx.icon_button(rx.icon("rotate-ccw", size=14), size="1", variant="ghost",
                               on_click=[rx.stop_propagation, RunsState.rerun_one(run.id)],
                               disabled=RunsState.is_acting, class_name="row-rerun",
                               aria_label="Re-run failed", title="Re-run failed tasks (reuse what succeeded)")),
        spacing="1",
        justify="end",
    )  # fmt: skip
    return actions


def _row(run: Any) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(
            rx.cond(SessionState.can_operate & run.can_cancel,
                    rx.checkbox(checked=RunsState.selected.contains(run.id),
                                on_change=lambda _checked: RunsState.toggle_selected(run.id),
                                on_click=rx.stop_propagation, class_name="row-select")),
        ),
        status_cell(run.status),
        rx.table.cell(
            rx.vstack(
                rx.link(run.name, href=run.href, weight="medium", size="2", class_name="run-link"),
                rx.hstack(
                    rx.text(run.short_id, size="1", color_scheme="gray", class_name="mono"),
                    rx.foreach(run.tags, _tag),
                    spacing="1",
                    align="center",
                ),
                spacing="0",
            )
        ),
        rx.table.cell(rx.badge(run.environment, variant="outline", color_scheme="gray")),
        text_cell(run.engines, size="2"),
        text_cell(run.trigger, size="2", color_scheme="gray"),
        number_cell(run.tasks, size="2"),
        rx.table.cell(local_time(run.created_iso, run.created, relative=True, size="2"), class_name="run-created"),
        rx.table.cell(local_time(run.started_iso, run.started, compact=True, size="2"), class_name="run-started"),
        rx.table.cell(local_time(run.finished_iso, run.finished, compact=True, size="2"), class_name="run-finished"),
        rx.table.cell(rx.text(run.duration, size="2", class_name="tabular"), text_align="right"),
        rx.table.cell(_row_actions(run)),
        class_name="clickable",
        on_click=rx.redirect(run.href),
        data_run_id=run.id,
        data_status=run.status,
    )  # fmt: skip
    return row


def _table() -> rx.Component:
    return data_table(RUN_COLUMNS, rx.foreach(RunsState.rows, _row), "runs-table", right=("Duration",))


def _bulk_bar() -> rx.Component:
    bar: rx.Component = rx.cond(
        RunsState.selected.length() > 0,
        rx.callout(
            rx.hstack(
                rx.text(RunsState.selected.length(), " selected", size="2", weight="medium", id="runs-selected"),
                rx.button(rx.icon("circle-stop", size=14), "Cancel selected", size="1", color_scheme="red",
                          on_click=RunsState.cancel_selected, disabled=RunsState.is_acting, id="cancel-selected"),
                rx.button("Clear", size="1", variant="soft", color_scheme="gray", on_click=RunsState.clear_selected),
                spacing="3",
                align="center",
            ),
            icon="list-checks",
            **BANNER,
        ),
    )  # fmt: skip
    return bar


def _pager() -> rx.Component:
    label = rx.text(f"{PAGE_SIZE} per page · page ", RunsState.page, size="2", color_scheme="gray", id="runs-page")
    return newer_older_pager(RunsState, label, "runs")


def _submit_dialog() -> rx.Component:
    return form_dialog(
        "Submit a run",
        rx.vstack(
            rx.hstack(
                field_label("Example", choice_select(RunsState.example_key, [(e.key, e.label) for e in EXAMPLES],
                                                     RunsState.choose_example, "submit-example")),
                rx.vstack(
                    rx.text("Environment", size="2", weight="medium"),
                    choice_select(RunsState.submit_environment, [(env, env) for env in ENVIRONMENTS],
                                  RunsState.set_submit_environment, "submit-environment", "140px"),
                    spacing="1",
                ),
                width="100%",
                spacing="3",
            ),
            rx.text(RunsState.example_description, size="1", color_scheme="gray"),
            rx.grid(
                rx.box(task_form(RunsState, "submit-form-"), id="submit-form", class_name="submit-form-pane"),
                rx.vstack(
                    rx.text("Spec (JSON)", size="2", weight="medium"),
                    rx.debounce_input(
                        rx.text_area(value=RunsState.spec_text, on_change=RunsState.set_spec_text, rows="18",
                                     class_name="mono", id="submit-spec", width="100%", font_size="12px",
                                     spell_check=False),
                        debounce_timeout=300,
                    ),
                    rx.text("Params (JSON object)", size="2", weight="medium"),
                    rx.text_area(value=RunsState.params_text, on_change=RunsState.set_params_text, rows="3",
                                 class_name="mono", id="submit-params", width="100%", font_size="12px"),
                    spacing="1", width="100%",
                ),
                columns=rx.breakpoints(initial="1", md="2"), spacing="4", width="100%",
            ),
            error_callout(RunsState.submit_error, "submit-error", width="100%"),
            dialog_actions("Submit run", RunsState.submit, RunsState.is_submitting, "submit-confirm", icon="play"),
            spacing="2",
            margin_top="12px",
            width="100%",
        ),
        is_open=RunsState.submit_open, on_open_change=RunsState.set_submit_open, max_width="1120px",
        description=("Start from an example, edit its tasks in the form or the JSON beside it, and run it in ",
                     rx.text.strong(SessionState.project_name), "."),
    )  # fmt: skip


@layout(route=routes.RUNS, title="Runs", on_load=RunsState.open_list)
def runs_page() -> rx.Component:
    """Filters, the live table and the pager; the submit button for operators."""
    return section_column(
        live_intro(rx.text("Runs of ", rx.text.strong(SessionState.project_name), size="2", color_scheme="gray"),
                   RunsLiveState.updated_at, RunsLiveState.is_loading,
                   rx.cond(SessionState.can_operate, rx.button(rx.icon("plus", size=16), "Submit run",
                                                               on_click=RunsState.open_submit, id="submit-run")),
                   spacing="4"),
        _filters(),
        error_callout(RunsState.error, "runs-error", width="100%"),
        _bulk_bar(),
        rx.cond(RunsState.loaded & (RunsState.rows.length() == 0),
                empty_state("inbox", "No runs match these filters.", "runs-empty"), _table()),
        _pager(),
        _submit_dialog(),
        live_ticker(1500, RunsState.tick),
    )  # fmt: skip
