"""Executor registry: who is online, draining or offline, their load and versions; admins drain,
undrain and revoke; running tasks per pool over the last hour."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import titled_card
from control_room.components.layout import layout, section_column
from control_room.components.live import live_intro, live_ticker
from control_room.components.notice import empty_note
from control_room.components.revoke import revoke_token_dialog
from control_room.components.stacked_text import name_over_detail
from control_room.components.status import badge_list
from control_room.components.styles import ROW
from control_room.components.table_rows import status_cell, text_cell
from control_room.components.tables import data_table
from control_room.state.base import SessionState
from control_room.state.executors import ExecutorsState

# Dict and dataclass vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
COUNTS: Any = ExecutorsState.counts
REVOKE_TARGET: Any = ExecutorsState.revoke_target


def _stat(label: str, value: rx.Var[int] | rx.Component, color: str, stat_id: str) -> rx.Component:
    card: rx.Component = rx.card(
        rx.vstack(
            rx.hstack(rx.box(width="8px", height="8px", border_radius="50%", background=rx.color(color, 9)),
                      rx.text(label, size="2", color_scheme="gray"), **ROW),
            rx.text(value, size="6", weight="bold", class_name="tabular", id=stat_id),
            spacing="1",
        ),
        size="2",
    )  # fmt: skip
    return card


def _admin_actions(executor: Any) -> rx.Component:
    busy = ExecutorsState.pending_action == executor.id
    actions: rx.Component = rx.hstack(
        rx.cond(
            executor.drain_requested,
            rx.button(rx.icon("play", size=12), "Undrain", size="1", variant="soft", color_scheme="grass",
                      loading=busy, on_click=ExecutorsState.set_drain(executor.id, False),
                          class_name="undrain-executor"),
            rx.button(rx.icon("pause", size=12), "Drain", size="1", variant="soft", color_scheme="amber",
                      loading=busy, on_click=ExecutorsState.set_drain(executor.id, True), class_name="drain-executor"),
        ),
        rx.button(rx.icon("ban", size=12), "Revoke", size="1", variant="soft", color_scheme="red",
                  on_click=ExecutorsState.ask_revoke(executor.id), class_name="revoke-executor"),
        spacing="2",
    )  # fmt: skip
    return actions


def _row(executor: Any) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(name_over_detail(executor.name, executor.hostname)),
        rx.table.cell(rx.badge(executor.pool, variant="outline", color_scheme="gray")),
        status_cell(executor.state),
        rx.table.cell(badge_list(executor.engines, "indigo")),
        rx.table.cell(badge_list(executor.labels, "gray")),
        rx.table.cell(
            rx.vstack(
                rx.text(executor.running, " / ", executor.capacity, size="2", class_name="tabular"),
                rx.progress(value=executor.load_percent, size="1", width="72px"),
                spacing="1",
            )
        ),
        text_cell(executor.version, size="2", class_name="mono"),
        text_cell(executor.last_heartbeat, size="2", white_space="nowrap"),
        rx.cond(
            SessionState.is_org_admin,
            rx.table.cell(rx.cond(executor.state != "revoked", _admin_actions(executor))),
        ),
        data_executor=executor.name,
        data_state=executor.state,
    )
    return row


def _table() -> rx.Component:
    heads = ["Executor", "Pool", "State", "Engines", "Labels", "Running", "Version", "Last heartbeat"]
    return data_table(
        (*heads, rx.cond(SessionState.is_org_admin, rx.table.column_header_cell("Actions"))),
        rx.foreach(ExecutorsState.rows, _row),
        "executors-table",
    )


def _revoke_dialog() -> rx.Component:
    return revoke_token_dialog(
        ExecutorsState,
        REVOKE_TARGET.name,
        "Its token stops working at once: its next request is refused and the tasks it holds are requeued when "
        "their leases expire. This cannot be undone; the agent needs a new token.",
        "revoke-confirm",
    )


@layout(route=routes.EXECUTORS, title="Executors", on_load=ExecutorsState.load)
def executors_page() -> rx.Component:
    """Summary, pool chart, and the registry table."""
    return section_column(
        live_intro(rx.text("Agents that claim and run tasks; shared by every project.", size="2", color_scheme="gray"),
                   ExecutorsState.updated_at, ~ExecutorsState.loaded),
        rx.grid(
            _stat("Online", COUNTS.get("online", 0), "grass", "count-online"),
            _stat("Draining", COUNTS.get("draining", 0), "amber", "count-draining"),
            _stat("Offline", COUNTS.get("offline", 0), "red", "count-offline"),
            _stat("Running / capacity",
                  rx.text(ExecutorsState.running_total, " / ", ExecutorsState.capacity_total, as_="span"), "blue",
                      "count-running"),
            columns="4",
            spacing="3",
            width="100%",
        ),
        titled_card(
            rx.hstack(rx.text("Running tasks per pool", size="2", weight="medium"),
                      rx.text("peak per minute, last hour (UTC)", size="1", color_scheme="gray"), **ROW),
            rx.cond(
                ExecutorsState.chart_has_data,
                rx.plotly.basic(data=ExecutorsState.chart, config={"displayModeBar": False, "responsive": True},
                                width="100%", id="pool-chart"),
                empty_note("No pool has run anything in the last hour.", height="120px", width="100%"),
            ),
        ),
        error_callout(ExecutorsState.error, "executors-error", width="100%"),
        rx.cond(
            ExecutorsState.loaded & (ExecutorsState.rows.length() == 0),
            empty_note("No executor has registered yet: start one with `lakehouse-executor run`.", padding="32px"),
            _table(),
        ),
        _revoke_dialog(),
        live_ticker(3000, ExecutorsState.tick),
    )  # fmt: skip
