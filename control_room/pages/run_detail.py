"""One run: header and actions; tabs for the DAG and tasks, the timeline (Gantt + live events), artifacts."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.layout import layout
from control_room.components.live import live_ticker
from control_room.components.status import level_badge, status_badge
from control_room.state.run_detail import (
    RunDetailState,
)

# Dataclass-valued vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
HEADER: Any = RunDetailState.header


def _fact(label: str, value: rx.Var[str] | rx.Component, **props: object) -> rx.Component:
    item: rx.Component = rx.data_list.item(
        rx.data_list.label(label, min_width="90px"),
        rx.data_list.value(value if isinstance(value, rx.Component) else rx.text(value, size="2"), **props),
    )
    return item


def _actions() -> rx.Component:
    cancel_dialog: rx.Component = rx.alert_dialog.root(
        rx.alert_dialog.trigger(
            rx.button(rx.icon("circle-stop", size=16), "Cancel run", color_scheme="red", variant="soft",
                      disabled=RunDetailState.is_acting, id="cancel-run"),
        ),
        rx.alert_dialog.content(
            rx.alert_dialog.title("Cancel this run?"),
            rx.alert_dialog.description(
                "Queued and waiting tasks end at once; running tasks are stopped by their executors.", size="2"
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Keep running", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(rx.button("Cancel run", color_scheme="red", on_click=RunDetailState.cancel,
                                                 id="cancel-confirm")),
                spacing="3",
                justify="end",
                margin_top="16px",
            ),
        ),
        open=RunDetailState.confirm_cancel,
        on_open_change=RunDetailState.set_confirm_cancel,
    )  # fmt: skip
    actions: rx.Component = rx.cond(
        RunDetailState.can_operate_run,
        rx.hstack(
            rx.cond(~HEADER.is_terminal & ~HEADER.cancel_requested, cancel_dialog),
            rx.cond(
                (HEADER.status == "failed") | (HEADER.status == "cancelled"),
                rx.button(rx.icon("rotate-ccw", size=16), "Retry", variant="soft", on_click=RunDetailState.retry,
                          disabled=RunDetailState.is_acting, id="retry-run"),
            ),
            spacing="2",
        ),
    )  # fmt: skip
    return actions


def _header() -> rx.Component:
    card: rx.Component = rx.card(
        rx.vstack(
            rx.hstack(
                rx.vstack(
                    rx.hstack(
                        rx.heading(HEADER.name, size="6", id="run-name"),
                        status_badge(HEADER.status, size="2", id="run-status"),
                        rx.cond(HEADER.cancel_requested & ~HEADER.is_terminal,
                                rx.badge("cancel requested", color_scheme="orange", variant="outline")),
                        spacing="3",
                        align="center",
                    ),
                    rx.hstack(
                        rx.code(HEADER.id, variant="ghost", size="1", color_scheme="gray", id="run-id"),
                        rx.tooltip(
                            rx.icon_button(rx.icon("copy", size=12), size="1", variant="ghost", color_scheme="gray",
                                           on_click=rx.set_clipboard(HEADER.id)),
                            content="Copy run id",
                        ),
                        rx.text("·", color_scheme="gray"),
                        rx.text(HEADER.tasks_summary, size="1", color_scheme="gray", id="run-progress"),
                        spacing="2",
                        align="center",
                    ),
                    spacing="1",
                ),
                rx.spacer(),
                _actions(),
                width="100%",
                align="start",
            ),
            rx.grid(
                rx.data_list.root(
                    _fact("Project", HEADER.project),
                    _fact("Environment", rx.badge(HEADER.environment, variant="outline", color_scheme="gray")),
                    _fact("Trigger", HEADER.trigger),
                    _fact("Requested by", rx.cond(HEADER.requested_by != "", HEADER.requested_by, "—")),
                    size="1",
                ),
                rx.data_list.root(
                    _fact("Created", HEADER.created),
                    _fact("Started", rx.cond(HEADER.started != "", HEADER.started, "not yet")),
                    _fact("Finished", rx.cond(HEADER.finished != "", HEADER.finished, "—")),
                    _fact("Duration", rx.cond(HEADER.duration != "", HEADER.duration, "—"), id="run-duration"),
                    size="1",
                ),
                rx.vstack(
                    rx.text("Params", size="1", weight="medium", color_scheme="gray"),
                    rx.cond(
                        RunDetailState.params.length() > 0,
                        rx.flex(rx.foreach(RunDetailState.params, _param), wrap="wrap", gap="6px"),
                        rx.text("none", size="2", color_scheme="gray"),
                    ),
                    rx.cond(HEADER.retry_of != "",
                            rx.text("Retry of ", rx.link(HEADER.retry_of, href=HEADER.retry_of_href,
                                                         class_name="mono"), size="1")),
                    spacing="2",
                ),
                columns="3",
                spacing="6",
                width="100%",
            ),
            rx.cond(HEADER.error != "", rx.callout(HEADER.error, icon="circle-alert", color_scheme="red",
                                                     size="1", width="100%")),
            rx.cond(HEADER.warnings != "", rx.callout(HEADER.warnings, icon="triangle-alert", color_scheme="amber",
                                                        size="1", width="100%", id="run-warnings")),
            spacing="4",
            width="100%",
        ),
        size="3",
        width="100%",
    )  # fmt: skip
    return card


def _param(param: Any) -> rx.Component:
    chip: rx.Component = rx.badge(
        rx.text(param.name, weight="bold"), "=", rx.text(param.value, class_name="mono"),
        variant="surface", color_scheme="gray", size="1",
    )  # fmt: skip
    return chip


def _task_row(task: Any) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(rx.text(task.key, weight="medium", size="2", class_name="mono")),
        rx.table.cell(rx.badge(task.engine, variant="surface", color_scheme="indigo", size="1")),
        rx.table.cell(status_badge(task.status)),
        rx.table.cell(rx.text(task.attempts, size="2", class_name="tabular")),
        rx.table.cell(rx.text(task.executor, size="2")),
        rx.table.cell(rx.text(task.duration, size="2", class_name="tabular")),
        rx.table.cell(rx.text(task.error, size="1", color_scheme="red", class_name="truncate", max_width="280px",
                              title=task.error)),
        data_task=task.key,
        data_status=task.status,
    )  # fmt: skip
    return row


def _attempt_row(attempt: Any) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(rx.text(attempt.task_key, size="2", class_name="mono")),
        rx.table.cell(rx.text(attempt.attempt, size="2")),
        rx.table.cell(rx.text(attempt.executor, size="2")),
        rx.table.cell(rx.text(attempt.claimed, size="2", class_name="tabular")),
        rx.table.cell(rx.text(attempt.duration, size="2", class_name="tabular")),
        rx.table.cell(status_badge(attempt.outcome)),
        rx.table.cell(rx.text(attempt.error, size="1", color_scheme="red", class_name="truncate", max_width="320px",
                              title=attempt.error)),
    )  # fmt: skip
    return row


def _table(headers: tuple[str, ...], body: rx.Component, table_id: str) -> rx.Component:
    table: rx.Component = rx.table.root(
        rx.table.header(rx.table.row(*(rx.table.column_header_cell(h) for h in headers))),
        rx.table.body(body),
        variant="surface",
        size="1",
        width="100%",
        class_name="data-table",
        id=table_id,
    )
    return table


def _overview() -> rx.Component:
    panel: rx.Component = rx.vstack(
        rx.grid(
            rx.card(
                rx.vstack(
                    rx.text("Task graph", size="2", weight="medium"),
                    rx.plotly.basic(data=RunDetailState.dag, config={"displayModeBar": False, "responsive": True},
                                    width="100%", id="run-dag"),
                    spacing="2",
                ),
                width="100%",
            ),
            rx.card(
                rx.vstack(
                    rx.text("Tasks", size="2", weight="medium"),
                    _table(("Task", "Engine", "State", "Attempt", "Executor", "Duration", "Error"),
                           rx.foreach(RunDetailState.tasks, _task_row), "tasks-table"),
                    spacing="2",
                    width="100%",
                ),
                width="100%",
            ),
            columns="minmax(280px, 2fr) 3fr",
            spacing="4",
            width="100%",
        ),
        rx.card(
            rx.vstack(
                rx.text("Attempts", size="2", weight="medium"),
                _table(("Task", "#", "Executor", "Claimed (UTC)", "Duration", "Outcome", "Error"),
                       rx.foreach(RunDetailState.attempts, _attempt_row), "attempts-table"),
                spacing="2",
                width="100%",
            ),
            width="100%",
        ),
        spacing="4",
        width="100%",
    )  # fmt: skip
    return panel


def _event_row(event: Any) -> rx.Component:
    row: rx.Component = rx.box(
        rx.text(event.time, as_="span", class_name="event-time"),
        rx.box(level_badge(event.level)),
        rx.text(event.task, as_="span", class_name="event-task", title=event.type),
        rx.text(
            event.message,
            " ",
            rx.text(event.detail, as_="span", class_name="event-detail"),
            as_="span",
            class_name="event-message",
        ),
        class_name="event-row level-" + event.level,
        data_event_id=event.id,
    )
    return row


def _events() -> rx.Component:
    toolbar: rx.Component = rx.hstack(
        rx.text("Events", size="2", weight="medium"),
        rx.text(RunDetailState.event_count_label, size="1", color_scheme="gray", id="event-count"),
        rx.spacer(),
        rx.select.root(
            rx.select.trigger(width="140px", id="event-level"),
            rx.select.content(
                rx.select.item("All levels", value="debug"),
                rx.select.item("Info and up", value="info"),
                rx.select.item("Warnings and up", value="warning"),
                rx.select.item("Errors only", value="error"),
            ),
            value=RunDetailState.level,
            on_change=RunDetailState.set_level,
            size="1",
        ),
        rx.debounce_input(
            rx.input(rx.input.slot(rx.icon("search", size=12)), placeholder="Search messages…",
                value=RunDetailState.search,
                     on_change=RunDetailState.set_search, size="1", width="220px", id="event-search"),
            debounce_timeout=300,
        ),
        rx.hstack(
            rx.switch(checked=RunDetailState.follow, on_change=RunDetailState.set_follow, size="1", id="event-follow"),
            rx.text("Follow", size="1"),
            spacing="1",
            align="center",
        ),
        width="100%",
        align="center",
        spacing="3",
    )  # fmt: skip
    rows = (
        rx.cond(
            RunDetailState.has_older,
            rx.center(rx.button(rx.icon("chevrons-up", size=12), "Load older events", size="1", variant="ghost",
                                on_click=RunDetailState.load_older, id="events-older"), padding="6px"),
        ),
        rx.cond(RunDetailState.events.length() == 0,
                rx.center(rx.text("No events yet.", size="2", color_scheme="gray"), padding="24px")),
        rx.foreach(RunDetailState.events, _event_row),
    )  # fmt: skip
    # Follow mode: the browser keeps the newest event in view while the log stays scrolled to its end
    # (scrolling up to read pauses it); without follow the view never moves on its own.
    log: rx.Component = rx.cond(
        RunDetailState.follow,
        rx.auto_scroll(*rows, class_name="event-log", id="event-log"),
        rx.box(*rows, class_name="event-log", id="event-log"),
    )
    card: rx.Component = rx.card(rx.vstack(toolbar, log, spacing="3", width="100%"), width="100%")
    return card


def _timeline() -> rx.Component:
    panel: rx.Component = rx.vstack(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.text("Timeline", size="2", weight="medium"),
                    rx.text("one bar per attempt, from claim to finish (UTC), coloured by outcome",
                            size="1", color_scheme="gray"),
                    spacing="3", align="center",
                ),
                rx.plotly.basic(data=RunDetailState.gantt, config={"displayModeBar": False, "responsive": True},
                                width="100%", id="run-gantt"),
                spacing="2",
                width="100%",
            ),
            width="100%",
        ),
        _events(),
        spacing="4",
        width="100%",
    )  # fmt: skip
    return panel


def _artifact_row(artifact: Any) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(rx.link(artifact.name, href=artifact.href, weight="medium", size="2")),
        rx.table.cell(rx.text(artifact.task_key, size="2", class_name="mono")),
        rx.table.cell(rx.text(artifact.content_type, size="2", color_scheme="gray")),
        rx.table.cell(rx.text(artifact.size, size="2", class_name="tabular")),
        rx.table.cell(rx.code(artifact.sha_short, size="1", variant="ghost")),
    )
    return row


def _artifacts() -> rx.Component:
    card: rx.Component = rx.card(
        rx.vstack(
            rx.hstack(
                rx.text("Artifacts", size="2", weight="medium"),
                rx.spacer(),
                rx.link("Open in the artifact browser", href=routes.ARTIFACTS + "?run=" + HEADER.id, size="2"),
                rx.link("MLflow runs", href=routes.ML_EXPERIMENTS + "?run=" + HEADER.id, size="2",
                        id="run-mlflow-link"),
                width="100%",
            ),
            rx.cond(
                RunDetailState.run_artifacts.length() > 0,
                _table(("Name", "Task", "Type", "Size", "SHA-256"), rx.foreach(RunDetailState.run_artifacts,
                    _artifact_row),
                       "run-artifacts-table"),
                rx.text("This run has no artifacts yet.", size="2", color_scheme="gray"),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )  # fmt: skip
    return card


def _body() -> rx.Component:
    body: rx.Component = rx.vstack(
        rx.hstack(
            rx.link(rx.hstack(rx.icon("arrow-left", size=14), rx.text("Runs", size="2"), spacing="1",
                              align="center"), href=routes.RUNS, color_scheme="gray"),
            rx.spacer(),
            live_ticker(1000, RunDetailState.tick),
            width="100%",
        ),
        _header(),
        rx.cond(RunDetailState.error != "", rx.callout(RunDetailState.error, icon="triangle-alert",
            color_scheme="red", size="1",
                                          width="100%", id="run-error")),
        rx.tabs.root(
            rx.tabs.list(
                rx.tabs.trigger("Overview", value="overview", id="tab-overview"),
                rx.tabs.trigger("Timeline & events", value="timeline", id="tab-timeline"),
                rx.tabs.trigger(rx.hstack("Artifacts", rx.badge(RunDetailState.run_artifacts.length(), size="1",
                                                                  variant="soft"), spacing="2", align="center"),
                                value="artifacts", id="tab-artifacts"),
            ),
            rx.tabs.content(_overview(), value="overview", padding_top="16px"),
            rx.tabs.content(_timeline(), value="timeline", padding_top="16px"),
            rx.tabs.content(_artifacts(), value="artifacts", padding_top="16px"),
            value=RunDetailState.tab,
            on_change=RunDetailState.set_tab,
            width="100%",
        ),
        spacing="4",
        width="100%",
    )  # fmt: skip
    return body


@layout(route=routes.RUN_DETAIL, title="Run", on_load=RunDetailState.load)
def run_detail_page() -> rx.Component:
    """The run, or why it cannot be shown."""
    page: rx.Component = rx.cond(
        RunDetailState.not_found != "",
        rx.center(
            rx.vstack(
                rx.icon("search-x", size=32, color=rx.color("gray", 9)),
                rx.text(RunDetailState.not_found, size="3", id="run-not-found"),
                rx.link("Back to runs", href=routes.RUNS),
                align="center",
            ),
            padding="64px",
        ),
        rx.cond(RunDetailState.loaded, _body(), rx.center(rx.spinner(size="3"), padding="64px")),
    )
    return page
