"""One run: header and actions; tabs for the DAG and tasks, the timeline (Gantt + live events), artifacts."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.dialogs import confirm_dialog
from control_room.components.forms import dialog_actions, error_callout, form_dialog
from control_room.components.headings import titled_card
from control_room.components.layout import counted_label, layout, page_tabs, section_column
from control_room.components.live import live_ticker
from control_room.components.notice import empty_note, not_found_notice
from control_room.components.search import search_box
from control_room.components.status import status_badge
from control_room.components.styles import BANNER, ROW, TOOLBAR
from control_room.components.table_rows import body_row, number_cell, status_cell, text_cell
from control_room.components.tables import data_table
from control_room.components.task_panel import event_line, task_panel
from control_room.components.times import local_time
from control_room.state.run_detail import (
    RunDetailState,
)
from control_room.state.run_detail.panel import TaskPanelState

# Dataclass-valued vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
HEADER: Any = RunDetailState.header


def _fact(label: str, value: rx.Var[str] | rx.Component, **props: object) -> rx.Component:
    item: rx.Component = rx.data_list.item(
        rx.data_list.label(label, min_width="90px"),
        rx.data_list.value(value if isinstance(value, rx.Component) else rx.text(value, size="2"), **props),
    )
    return item


def _actions() -> rx.Component:
    cancel_dialog = confirm_dialog(
        title=("Cancel this run?",),
        description="Queued and waiting tasks end at once; running tasks are stopped by their executors.",
        confirm_label="Cancel run", confirm_id="cancel-confirm", on_confirm=RunDetailState.cancel,
        is_open=RunDetailState.confirm_cancel, on_open_change=RunDetailState.set_confirm_cancel,
        cancel_label="Keep running",
        trigger=rx.button(rx.icon("circle-stop", size=16), "Cancel run", color_scheme="red", variant="soft",
                          disabled=RunDetailState.is_acting, id="cancel-run"),
    )  # fmt: skip
    failed_or_cancelled = (HEADER.status == "failed") | (HEADER.status == "cancelled")
    actions: rx.Component = rx.cond(
        RunDetailState.can_operate_run,
        rx.hstack(
            rx.cond(~HEADER.is_terminal & ~HEADER.cancel_requested, cancel_dialog),
            rx.cond(
                failed_or_cancelled,
                rx.tooltip(
                    rx.button(rx.icon("rotate-ccw", size=16), "Re-run failed", on_click=RunDetailState.rerun_failed,
                              disabled=RunDetailState.is_acting, id="rerun-failed"),
                    content="Run the failed, cancelled and downstream tasks; reuse what succeeded",
                ),
            ),
            rx.cond(HEADER.is_terminal, _rerun_from_dialog()),
            rx.cond(
                failed_or_cancelled,
                rx.button(rx.icon("list-restart", size=16), "Re-run all", variant="soft", color_scheme="gray",
                          on_click=RunDetailState.retry, disabled=RunDetailState.is_acting, id="retry-run"),
            ),
            spacing="2",
            wrap="wrap",
            justify="end",
        ),
    )  # fmt: skip
    return actions


def _rerun_from_dialog() -> rx.Component:
    return form_dialog(
        "Re-run from a task",
        rx.vstack(
            rx.select.root(
                rx.select.trigger(width="100%", id="rerun-task"),
                rx.select.content(
                    rx.foreach(RunDetailState.tasks, lambda task: rx.select.item(task.key, value=task.key))
                ),
                value=RunDetailState.rerun_task,
                on_change=RunDetailState.set_rerun_task,
            ),
            dialog_actions("Re-run from here", RunDetailState.rerun_from_task, RunDetailState.is_acting,
                           "rerun-from-confirm", cancel="Keep"),
            spacing="4", margin_top="12px", width="100%",
        ),
        is_open=RunDetailState.confirm_rerun_from, on_open_change=RunDetailState.set_confirm_rerun_from,
        max_width="440px",
        description="The task you pick and every task downstream of it run again; the others keep their outcome "
                    "and artifacts from this run.",
        trigger=rx.button(rx.icon("git-branch", size=16), "Re-run from task…", variant="soft",
                          disabled=RunDetailState.is_acting, id="rerun-from"),
    )  # fmt: skip


def _rerun_link(link: Any) -> rx.Component:
    item: rx.Component = rx.link(link.name, href=link.value, class_name="mono rerun-link", size="1")
    return item


def _header() -> rx.Component:
    card: rx.Component = rx.card(
        section_column(
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
                        **ROW,
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
                    _fact("Project", rx.text(HEADER.project, size="2", title=HEADER.project_slug, id="run-project")),
                    _fact("Environment", rx.badge(HEADER.environment, variant="outline", color_scheme="gray")),
                    _fact("Trigger", HEADER.trigger),
                    _fact("Requested by", rx.cond(HEADER.requested_by != "", HEADER.requested_by, "—")),
                    size="1",
                ),
                rx.data_list.root(
                    _fact("Created", local_time(HEADER.created_iso, HEADER.created, id="run-created")),
                    _fact("Started", rx.cond(HEADER.started != "", local_time(HEADER.started_iso, HEADER.started,
                                                                              id="run-started"), "not yet")),
                    _fact("Finished", rx.cond(HEADER.finished != "", local_time(HEADER.finished_iso, HEADER.finished,
                                                                                id="run-finished"), "—")),
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
                            rx.text("Re-run of ", rx.link(HEADER.retry_of, href=HEADER.retry_of_href,
                                                          class_name="mono"), size="1", id="rerun-of")),
                    rx.cond(RunDetailState.reruns.length() > 0,
                            rx.hstack(rx.text("Re-run as", size="1"), rx.foreach(RunDetailState.reruns, _rerun_link),
                                      spacing="2", wrap="wrap", id="reruns")),
                    spacing="2",
                ),
                columns=rx.breakpoints(initial="1", sm="2", lg="3"),
                spacing="6",
                width="100%",
            ),
            error_callout(HEADER.error, "run-error-summary", icon="circle-alert", width="100%"),
            rx.cond(HEADER.warnings != "", rx.callout(HEADER.warnings, icon="triangle-alert", color_scheme="amber",
                                                        **BANNER, id="run-warnings")),
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
    return body_row(
        text_cell(task.key, weight="medium", size="2", class_name="mono"),
        rx.table.cell(rx.badge(task.engine, variant="surface", color_scheme="indigo", size="1")),
        rx.table.cell(
            rx.hstack(
                status_badge(task.status),
                rx.cond(task.reused_from != "",
                        rx.link(rx.badge("reused", variant="outline", color_scheme="gray", size="1"),
                                href=task.reused_href, title="Outcome reused from run " + task.reused_from,
                                class_name="reused-link")),
                spacing="1", align="center",
            )
        ),
        number_cell(task.attempts, size="2"),
        text_cell(task.executor, size="2"),
        rx.table.cell(rx.text(task.queued, size="2", class_name="tabular"), class_name="task-queued"),
        rx.table.cell(rx.text(task.duration, size="2", class_name="tabular"), class_name="task-duration"),
        rx.table.cell(
            rx.cond(
                task.queue_reason != "",
                rx.text(rx.icon("hourglass", size=11, display="inline", margin_right="4px"), task.queue_reason,
                        size="1", color_scheme="amber", class_name="queue-reason", title=task.queue_reason,
                        white_space="normal", min_width="220px"),
                rx.text(task.error, size="1", color_scheme="red", class_name="truncate", max_width="280px",
                        title=task.error),
            )
        ),
        data_task=task.key,
        data_status=task.status,
        class_name="task-row",
        cursor="pointer",
        title="Open the task: spec, attempts, log, artifacts, lineage",
        on_click=TaskPanelState.open_task(task.key, ""),
    )  # fmt: skip


def _attempt_row(attempt: Any) -> rx.Component:
    return body_row(
        text_cell(attempt.task_key, size="2", class_name="mono"),
        text_cell(attempt.attempt, size="2"),
        text_cell(attempt.executor, size="2"),
        number_cell(attempt.claimed, size="2"),
        rx.table.cell(rx.text(attempt.duration, size="2", class_name="tabular"), class_name="attempt-duration"),
        status_cell(attempt.outcome),
        text_cell(attempt.error, size="1", color_scheme="red", class_name="truncate", max_width="320px",
                  title=attempt.error),
        data_task=attempt.task_key,
        data_attempt=attempt.attempt,
        class_name="attempt-row",
        cursor="pointer",
        on_click=TaskPanelState.open_attempt(attempt.task_key, attempt.attempt),
    )  # fmt: skip


# What each duration measures (the column headers' hover), so the three figures of an attempt agree.
DURATION_HELP = {
    "Queued": "From becoming queued (its dependencies done) to its latest claim by an executor",
    "Claimed → finished": "The latest attempt, from its claim by an executor to its recorded outcome "
    "(the Gantt bar); the finish event's process wall time is the engine's run alone",
}


TASK_COLUMNS = ("Task", "Engine", "State", "Attempt", "Executor", "Queued", "Claimed → finished", "Why waiting / error")


def _header_cell(label: str) -> rx.Component:
    cell: rx.Component = rx.table.column_header_cell(label, title=DURATION_HELP.get(label), white_space="nowrap")
    return cell


def _table(headers: tuple[str, ...], body: rx.Component, table_id: str) -> rx.Component:
    return data_table([_header_cell(h) for h in headers], body, table_id)


def _overview() -> rx.Component:
    return section_column(
        rx.grid(
            titled_card("Task graph",
                        rx.plotly.basic(data=RunDetailState.dag, config={"displayModeBar": False, "responsive": True},
                                        width="100%", id="run-dag", on_click=TaskPanelState.pick_task_node)),
            titled_card("Tasks", _table(TASK_COLUMNS, rx.foreach(RunDetailState.tasks, _task_row), "tasks-table")),
            columns=rx.breakpoints(initial="1", lg="minmax(240px, 1fr) 2fr"),
            spacing="4",
            width="100%",
        ),
        titled_card("Attempts",
                    _table(("Task", "#", "Executor", "Claimed (UTC)", "Claimed → finished", "Outcome", "Error"),
                           rx.foreach(RunDetailState.attempts, _attempt_row), "attempts-table")),
    )  # fmt: skip


def _event_row(event: Any) -> rx.Component:
    archived = rx.badge("archived", color_scheme="gray", variant="outline", size="1", class_name="archived-badge",
                        margin_right="6px")  # fmt: skip
    return event_line(
        event,
        task=rx.text(event.task, as_="span", class_name="event-task", title=event.type),
        mark=rx.cond(event.archived, archived),
        class_name="event-row level-" + event.level + rx.cond(event.archived, " archived", ""),
        data_event_id=event.id,
    )


def _events() -> rx.Component:
    toolbar = rx.hstack(
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
        rx.select.root(
            rx.select.trigger(placeholder="All tasks", width="150px", id="event-task"),
            rx.select.content(rx.select.item("All tasks", value="all"),
                              rx.foreach(RunDetailState.tasks, lambda task: rx.select.item(task.key, value=task.id))),
            value=rx.cond(RunDetailState.event_task == "", "all", RunDetailState.event_task),
            on_change=RunDetailState.set_event_task,
            size="1",
        ),
        search_box(RunDetailState.search, RunDetailState.set_search, "Search messages…", "event-search", "220px",
                   icon_size=12, size="1"),
        rx.hstack(
            rx.switch(checked=RunDetailState.follow, on_change=RunDetailState.set_follow, size="1", id="event-follow"),
            rx.text("Follow", size="1"),
            spacing="1",
            align="center",
        ),
        **TOOLBAR,
    )  # fmt: skip
    rows = (
        rx.foreach(RunDetailState.archived_events, _event_row),
        rx.cond(
            RunDetailState.has_older,
            rx.center(rx.button(rx.icon("chevrons-up", size=12), "Load older events", size="1", variant="ghost",
                                on_click=RunDetailState.load_older, id="events-older"), padding="6px"),
        ),
        rx.cond((RunDetailState.events.length() == 0) & (RunDetailState.archived_events.length() == 0),
                empty_note(rx.cond(RunDetailState.archive_notice != "", "No events left in the database: "
                                   "load the archived ones above.", "No events yet."), padding="24px")),
        rx.foreach(RunDetailState.events, _event_row),
    )  # fmt: skip
    # Follow mode: the browser keeps the newest event in view while the log stays scrolled to its end
    # (scrolling up to read pauses it); without follow the view never moves on its own.
    log: rx.Component = rx.cond(
        RunDetailState.follow,
        rx.auto_scroll(*rows, class_name="event-log", id="event-log", width="100%"),
        rx.box(*rows, class_name="event-log", id="event-log", width="100%"),
    )
    return titled_card(toolbar, _archive_notice(), log, spacing="3")


def _archive_notice() -> rx.Component:
    """Event retention moved this run's events to Parquet: say so, and offer to read them back."""
    load_label = rx.cond(RunDetailState.archived_loaded, "Load more archived events", "Load archived events")
    notice: rx.Component = rx.cond(
        RunDetailState.archive_notice != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("archive", size=14)),
            rx.hstack(
                rx.callout.text(RunDetailState.archive_notice, size="1", id="archive-notice"),
                rx.spacer(),
                rx.cond(
                    ~RunDetailState.archived_loaded | RunDetailState.archived_more,
                    rx.button(rx.icon("archive-restore", size=12), load_label, size="1", variant="soft",
                              loading=RunDetailState.is_loading_archive, on_click=RunDetailState.load_archived,
                              id="events-archived-load"),
                    rx.text(RunDetailState.archived_events.length().to_string() + " archived events shown",
                            size="1", color_scheme="gray", id="archived-count"),
                ),
                **TOOLBAR,
            ),
            color_scheme="gray",
            variant="surface",
            **BANNER,
            id="event-archive",
        ),
    )  # fmt: skip
    return notice


def _timeline() -> rx.Component:
    heading = rx.hstack(
        rx.text("Timeline", size="2", weight="medium"),
        rx.text("one bar per attempt, from claim to finish (UTC), coloured by outcome; "
                "click a bar to open its attempt; wheel to zoom, drag to pan, double-click to reset",
                size="1", color_scheme="gray"),
        spacing="3", align="center",
    )  # fmt: skip
    gantt = rx.plotly.basic(data=RunDetailState.gantt, config={"displayModeBar": False, "responsive": True,
                                                               "scrollZoom": True, "doubleClick": "reset"},
                            width="100%", id="run-gantt", on_click=TaskPanelState.pick_attempt_bar)  # fmt: skip
    return section_column(titled_card(heading, gantt), _events())


def _artifact_row(artifact: Any) -> rx.Component:
    return body_row(
        rx.table.cell(rx.link(artifact.name, href=artifact.href, weight="medium", size="2")),
        text_cell(artifact.task_key, size="2", class_name="mono"),
        text_cell(artifact.content_type, size="2", color_scheme="gray"),
        number_cell(artifact.size, size="2"),
        rx.table.cell(rx.code(artifact.sha_short, size="1", variant="ghost")),
    )


def _artifacts() -> rx.Component:
    heading = rx.hstack(
        rx.text("Artifacts", size="2", weight="medium"),
        rx.spacer(),
        rx.link("Open in the artifact browser", href=routes.ARTIFACTS + "?run=" + HEADER.id, size="2"),
        rx.link("MLflow runs", href=routes.ML_EXPERIMENTS + "?run=" + HEADER.id, size="2", id="run-mlflow-link"),
        width="100%",
    )
    listing = rx.cond(
        RunDetailState.run_artifacts.length() > 0,
        _table(("Name", "Task", "Type", "Size", "SHA-256"), rx.foreach(RunDetailState.run_artifacts, _artifact_row),
               "run-artifacts-table"),
        rx.text("This run has no artifacts yet.", size="2", color_scheme="gray"),
    )  # fmt: skip
    return titled_card(heading, listing, spacing="3")


def _body() -> rx.Component:
    return section_column(
        rx.hstack(
            rx.hstack(
                rx.link(HEADER.project, href=routes.HOME, color_scheme="gray", size="2"),
                rx.icon("chevron-right", size=12, color=rx.color("gray", 9)),
                rx.link("Runs", href=routes.RUNS, color_scheme="gray", size="2"),
                rx.icon("chevron-right", size=12, color=rx.color("gray", 9)),
                rx.text(HEADER.name, size="2", weight="medium", class_name="truncate", max_width="420px"),
                rx.cond(TaskPanelState.panel_open & (TaskPanelState.panel_key != ""), rx.hstack(
                    rx.icon("chevron-right", size=12, color=rx.color("gray", 9)),
                    rx.text(TaskPanelState.panel_key, size="2", class_name="mono", id="breadcrumb-task"),
                    **ROW)),
                **ROW, id="breadcrumbs", aria_label="Breadcrumbs",
            ),
            rx.spacer(),
            live_ticker(1000, RunDetailState.tick),
            width="100%",
        ),
        _header(),
        error_callout(RunDetailState.error, "run-error", width="100%"),
        page_tabs(
            (
                ("Overview", "overview", _overview()),
                ("Timeline & events", "timeline", _timeline()),
                (counted_label("Artifacts", RunDetailState.run_artifacts.length()), "artifacts", _artifacts()),
            ),
            RunDetailState.tab, RunDetailState.set_tab,
        ),
        task_panel(),
    )  # fmt: skip


@layout(route=routes.RUN_DETAIL, title="Run", on_load=[RunDetailState.load, TaskPanelState.open_from_address])
def run_detail_page() -> rx.Component:
    """The run, or why it cannot be shown."""
    page: rx.Component = rx.cond(
        RunDetailState.not_found != "",
        not_found_notice(RunDetailState.not_found, element_id="run-not-found"),
        rx.cond(
            RunDetailState.loaded,
            _body(),
            rx.cond(
                RunDetailState.load_failed,
                _load_failed(),
                rx.center(rx.spinner(size="3"), padding="64px", id="run-opening"),
            ),
        ),
    )
    return page


def _load_failed() -> rx.Component:
    """Opening the run failed (the database did not answer): why, and a button to try again."""
    notice: rx.Component = rx.vstack(
        rx.heading("This run could not be opened", size="4", id="run-load-title"),
        error_callout(RunDetailState.error, "run-load-error", width="100%"),
        rx.button(rx.icon("rotate-cw", size=14), "Try again", on_click=RunDetailState.load, id="run-load-retry",
                  variant="soft"),
        spacing="3", padding="32px", width="100%", align="start",
    )  # fmt: skip
    return notice
