"""The run page's task panel: a drawer with the task's spec, attempts, one attempt's log (jump to the first
error, download the whole log), its artifacts and the datasets it read and wrote."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.components.forms import error_callout
from control_room.components.status import level_badge, status_badge
from control_room.components.table_rows import body_row, number_cell, status_cell, text_cell
from control_room.state.run_detail.panel import TaskPanelState

# A dataclass-valued var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
TASK: Any = TaskPanelState.panel_task


def _section(title: str, *children: rx.Component, **props: Any) -> rx.Component:
    section: rx.Component = rx.vstack(
        rx.text(title, size="2", weight="medium"), *children, spacing="2", width="100%", **props
    )
    return section


def _attempt(row: Any) -> rx.Component:
    item: rx.Component = body_row(
        text_cell("#", row.attempt, size="2"),
        text_cell(row.executor, size="2"),
        number_cell(row.claimed, size="2"),
        number_cell(row.duration, size="2"),
        status_cell(row.outcome),
        text_cell(row.error, size="1", color_scheme="red", class_name="truncate", max_width="200px", title=row.error),
        data_attempt=row.attempt,
        class_name="panel-attempt",
        cursor="pointer",
        on_click=TaskPanelState.show_attempt(row.attempt.to_string()),
    )  # fmt: skip
    return item


def event_line(
    event: Any, *, task: rx.Component | None = None, mark: rx.Component | None = None, **props: Any
) -> rx.Component:
    """One line of an event log (the run page's and the panel's): its time, level, ``task`` (the run page's log
    names the task), then its message (``mark`` in front) with the detail muted; ``props`` go to the line."""
    line: rx.Component = rx.box(
        rx.text(event.time, as_="span", class_name="event-time"),
        rx.box(level_badge(event.level)),
        *([task] if task is not None else []),
        rx.text(*([mark] if mark is not None else []), event.message, " ",
                rx.text(event.detail, as_="span", class_name="event-detail"), as_="span", class_name="event-message"),
        **props,
    )  # fmt: skip
    return line


def _event(event: Any) -> rx.Component:
    return event_line(
        event, class_name="event-row panel-event level-" + event.level, id="panel-event-" + event.id.to_string()
    )


def _dataset(row: Any) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.badge(row.access, variant="soft", color_scheme=rx.cond(row.access == "wrote", "green", "blue"), size="1"),
        rx.cond(row.href != "", rx.link(row.name, href=row.href, size="2", class_name="mono"),
                rx.text(row.name, size="2", class_name="mono")),
        rx.text(row.namespace, size="1", color_scheme="gray", class_name="truncate", max_width="200px",
                title=row.namespace),
        spacing="2", align="center", class_name="panel-dataset",
    )  # fmt: skip
    return item


def _artifact(row: Any) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.link(row.name, href=row.href, size="2"),
        rx.text(row.size, size="1", color_scheme="gray", class_name="tabular"),
        spacing="2", align="center", class_name="panel-artifact",
    )  # fmt: skip
    return item


def _log() -> rx.Component:
    toolbar: rx.Component = rx.hstack(
        rx.text("Log", size="2", weight="medium"),
        rx.cond(
            TaskPanelState.panel_attempt_numbers.length() > 1,
            rx.select(TaskPanelState.panel_attempt_numbers, value=TaskPanelState.panel_attempt,
                      on_change=TaskPanelState.show_attempt, size="1", id="panel-attempt-select"),
            rx.text(rx.cond(TaskPanelState.panel_attempt != "", "attempt " + TaskPanelState.panel_attempt, ""),
                    size="1", color_scheme="gray"),
        ),
        rx.spacer(),
        rx.button(rx.icon("circle-alert", size=12), "Jump to first error", size="1", variant="soft",
                  color_scheme="red", disabled=TaskPanelState.panel_first_error == 0,
                  on_click=TaskPanelState.jump_to_first_error, id="panel-first-error"),
        rx.button(rx.icon("download", size=12), "Download log", size="1", variant="soft", color_scheme="gray",
                  on_click=TaskPanelState.download_log, id="panel-download-log"),
        width="100%", align="center", spacing="2",
    )  # fmt: skip
    body: rx.Component = rx.vstack(
        toolbar,
        rx.cond(TaskPanelState.panel_events_note != "",
                rx.text(TaskPanelState.panel_events_note, size="1", color_scheme="gray")),
        rx.box(
            rx.cond(TaskPanelState.panel_events.length() == 0,
                    rx.text("No events for this attempt.", size="2", color_scheme="gray", padding="12px")),
            rx.foreach(TaskPanelState.panel_events, _event),
            class_name="event-log", id="panel-log", max_height="320px", width="100%",
        ),
        spacing="2", width="100%",
    )  # fmt: skip
    return body


def _content() -> rx.Component:
    header: rx.Component = rx.hstack(
        rx.text(TaskPanelState.panel_key, size="4", weight="bold", class_name="mono", id="panel-task-key"),
        rx.badge(TASK.engine, variant="surface", color_scheme="indigo", size="1"),
        status_badge(TASK.status),
        rx.cond(TASK.reused_href != "", rx.link("outcome reused: open the original", href=TASK.reused_href, size="1")),
        rx.spacer(),
        rx.drawer.close(rx.icon_button(rx.icon("x", size=14), variant="ghost", size="1", aria_label="Close",
                                       id="panel-close")),
        width="100%", align="center", spacing="2",
    )  # fmt: skip
    panel: rx.Component = rx.vstack(
        header,
        error_callout(TaskPanelState.panel_error),
        rx.cond(TaskPanelState.panel_loading, rx.spinner(size="2")),
        _section("Attempts", rx.table.root(rx.table.body(rx.foreach(TaskPanelState.panel_attempts, _attempt)),
                                           size="1", width="100%", variant="surface")),
        _log(),
        _section("Reads and writes",
                 rx.cond(TaskPanelState.panel_datasets.length() == 0,
                         rx.text("No lineage reported by this task.", size="1", color_scheme="gray")),
                 rx.foreach(TaskPanelState.panel_datasets, _dataset), id="panel-datasets"),
        _section("Artifacts",
                 rx.cond(TaskPanelState.panel_artifacts.length() == 0,
                         rx.text("No artifacts.", size="1", color_scheme="gray")),
                 rx.foreach(TaskPanelState.panel_artifacts, _artifact), id="panel-artifacts"),
        _section("Spec", rx.code_block(TASK.spec, language="json", font_size="12px", width="100%",
                                       max_height="280px", overflow="auto"), id="panel-spec"),
        spacing="4", width="100%", padding="20px", overflow_y="auto", height="100%",
    )  # fmt: skip
    return panel


def task_panel() -> rx.Component:
    """The drawer, open while a task is selected (``?task=`` in the address)."""
    drawer: rx.Component = rx.drawer.root(
        rx.drawer.portal(
            rx.drawer.overlay(),
            rx.drawer.content(
                _content(),
                top="0", right="0", height="100%", width=rx.breakpoints(initial="100%", md="640px"),
                background_color=rx.color("gray", 1), border_left=f"1px solid {rx.color('gray', 5)}",
                id="task-panel", role="dialog", aria_label="Task",
            ),
        ),
        open=TaskPanelState.panel_open,
        on_open_change=TaskPanelState.set_panel_open,
        direction="right",
    )  # fmt: skip
    return drawer
