"""Dashboards: a shipped template or a saved dashboard drawn on the project's real data, with time range,
filters, cross-filtering and auto-refresh; operators clone and edit one as YAML with a preview."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout, form_dialog
from control_room.components.layout import layout
from control_room.components.live import live_intro, live_ticker
from control_room.components.tables import result_table
from control_room.dashboards.models import REFRESH_CHOICES, TIME_RANGES
from control_room.pages.superset import push_button, push_messages
from control_room.state.dashboards import DashboardsState
from control_room.state.rows import Choice, FilterChoice, Panel

PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
REFRESH_LABELS = [str(seconds) for seconds in REFRESH_CHOICES]


def _table(panel: Any) -> rx.Component:
    table: rx.Component = rx.box(
        result_table(panel.columns, panel.rows, cell=lambda value: rx.text(value, size="1", class_name="truncate"),
                     width="100%"),
        max_height="300px", overflow="auto", width="100%",
    )  # fmt: skip
    return table


def _panel(panel: Panel) -> rx.Component:
    card: rx.Component = rx.card(
        rx.vstack(
            rx.text(panel.title, weight="bold", size="2"),
            rx.match(
                panel.kind,
                ("message", rx.callout(panel.message, icon="info", color_scheme="gray", size="1")),
                ("table", _table(panel)),
                ("number", rx.heading(panel.number, size="8")),
                rx.vstack(
                    rx.plotly.basic(data=panel.figure, config=PLOT_CONFIG, width="100%",
                                    on_click=lambda points: DashboardsState.cross_filter(panel.id, points)),
                    rx.cond(panel.message != "", rx.text(panel.message, size="1", color_scheme="gray")),
                    width="100%", spacing="1",
                ),
            ),
            spacing="2", width="100%",
        ),
        width="100%", min_width="0", class_name="dashboard-panel", id=f"panel-{panel.id}",
    )  # fmt: skip
    return card


def _rows(rows: Any) -> rx.Component:
    grid: rx.Component = rx.vstack(
        rx.foreach(rows, lambda row: rx.grid(rx.foreach(row, _panel), columns=row.length().to_string(),
                                             spacing="3", width="100%")),
        spacing="3", width="100%",
    )  # fmt: skip
    return grid


def _filter(item: FilterChoice) -> rx.Component:
    select: rx.Component = rx.hstack(
        rx.text(item.label, size="2", color_scheme="gray"),
        rx.select(item.options, value=item.value,
                  on_change=lambda v: DashboardsState.set_filter(item.name, v), size="1", id="filter-" + item.name),
        spacing="2", align="center",
    )  # fmt: skip
    return select


def _editor() -> rx.Component:
    dialog: rx.Component = form_dialog(
        "Edit dashboard YAML",
        rx.text("Datasets are SQL on the ops views, read with your rights; :project_id, :since, :until and "
                "each filter's name are bound for you. Schema: spec/dashboard.schema.json.",
                size="1", color_scheme="gray"),
        rx.grid(
            rx.text_area(value=DashboardsState.source_yaml, on_change=DashboardsState.set_source_yaml,
                         font_family="monospace", font_size="12px", height="60vh", id="dashboard-yaml"),
            rx.box(_rows(DashboardsState.preview), height="60vh", overflow_y="auto", id="dashboard-preview"),
            columns="2", spacing="3", width="100%",
        ),
        error_callout(DashboardsState.editor_error, "dashboard-editor-error"),
        rx.hstack(
            rx.text("Save as", size="2"),
            rx.input(value=DashboardsState.save_slug, on_change=DashboardsState.set_save_slug, width="220px",
                     id="dashboard-slug"),
            rx.spacer(),
            rx.button("Preview", on_click=DashboardsState.preview_yaml, variant="soft", id="dashboard-preview-btn"),
            rx.button("Save", on_click=DashboardsState.save, id="dashboard-save"),
            rx.dialog.close(rx.button("Cancel", variant="ghost", color_scheme="gray")),
            width="100%", align="center", margin_top="8px",
        ),
        is_open=DashboardsState.editor_open, on_open_change=DashboardsState.set_editor_open,
        max_width="1400px", width="95vw",
    )  # fmt: skip
    return dialog


def _choice(choice: Choice) -> rx.Component:
    item: rx.Component = rx.select.item(choice.label, value=choice.key)
    return item


@layout(route=routes.DASHBOARDS, title="Dashboards", on_load=DashboardsState.open_page)
def dashboards_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        live_intro(rx.vstack(rx.heading(DashboardsState.title, size="6", id="dashboard-title"),
                             rx.text(DashboardsState.description, " · ", DashboardsState.version_label, size="2",
                                     color_scheme="gray"), spacing="1"),
                   DashboardsState.updated_at, DashboardsState.is_loading),
        rx.hstack(
            rx.select.root(rx.select.trigger(width="300px", id="dashboard-choice"),
                           rx.select.content(rx.foreach(DashboardsState.choices, _choice)),
                           value=DashboardsState.selected, on_change=DashboardsState.choose),
            rx.select(list(TIME_RANGES), value=DashboardsState.time_range, on_change=DashboardsState.set_time_range,
                      id="dashboard-range"),
            rx.hstack(rx.text("Refresh (s)", size="2", color_scheme="gray"),
                      rx.select(REFRESH_LABELS, value=DashboardsState.refresh_seconds.to_string(),
                                on_change=DashboardsState.set_refresh, size="1"), spacing="2", align="center"),
            rx.foreach(DashboardsState.filters, _filter),
            rx.spacer(),
            rx.cond(DashboardsState.can_operate,
                    rx.button(rx.icon("copy", size=14), "Clone & edit", on_click=DashboardsState.open_editor,
                              id="dashboard-edit")),
            push_button(DashboardsState.selected, DashboardsState.can_operate),
            width="100%", align="center", wrap="wrap", spacing="3",
        ),
        push_messages(),
        rx.cond(DashboardsState.notice != "", rx.callout(DashboardsState.notice, icon="check", color_scheme="green",
                                                          size="1", id="dashboard-notice")),
        error_callout(DashboardsState.error, "dashboard-error", size="2"),
        _rows(DashboardsState.panels),
        rx.match(DashboardsState.refresh_seconds,
                 *[(s, live_ticker(s * 1000, DashboardsState.refresh)) for s in REFRESH_CHOICES if s],
                 rx.fragment()),
        _editor(),
        spacing="4", width="100%", id="dashboards-page",
    )  # fmt: skip
    return content
