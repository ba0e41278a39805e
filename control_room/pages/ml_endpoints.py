"""Serving endpoints: the project's endpoints with health, replicas and traffic split; one endpoint's replicas
(address, process, attempts, restarts, logs), request rate, error rate and latency p50/p95 (plotly), create,
canary / promote / roll back / stop / start / delete (confirmed first), and a "try it" form that sends a
prediction through the proxy."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.dialogs import confirm_dialog
from control_room.components.forms import error_callout
from control_room.components.headings import page_heading, titled_card
from control_room.components.layout import layout
from control_room.components.table_rows import body_row, number_cell, opener_row, text_cell
from control_room.components.tables import data_table
from control_room.state.rows import EndpointRow, ReplicaRow
from control_room.state.serving import EndpointsState

PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
HEALTH_COLORS = {"healthy": "green", "degraded": "amber", "starting": "blue", "down": "red", "stopped": "gray"}
# Dataclass vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
DETAIL: Any = EndpointsState.detail
FORM: Any = EndpointsState.form
ANSWER: Any = EndpointsState.answer


def _health_badge(health: rx.Var[str] | str) -> rx.Component:
    badge: rx.Component = rx.badge(health, color_scheme=rx.match(health, *HEALTH_COLORS.items(), "gray"),
                                   variant="soft", class_name="endpoint-health")  # fmt: skip
    return badge


def _endpoint_row(row: EndpointRow) -> rx.Component:
    return opener_row(
        row.name, EndpointsState.open_endpoint(row.name), "endpoint-name",
        rx.table.cell(_health_badge(row.health)),
        number_cell(row.replicas),
        text_cell(row.traffic, size="2"),
        number_cell(row.revision),
        class_name="endpoint-row",
    )  # fmt: skip


def _replica_row(row: ReplicaRow) -> rx.Component:
    return body_row(
        text_cell(row.version, "  #", row.index),
        rx.table.cell(rx.badge(row.state, color_scheme=rx.cond(row.state == "healthy", "green", "gray"),
                               variant="soft")),
        number_cell(row.address),
        number_cell(row.pid),
        number_cell(row.attempt, " / ", row.restarts),
        rx.table.cell(rx.link("logs", href=row.run_href, size="2")),
        text_cell(row.error, size="1", color_scheme="gray", max_width="320px"),
        class_name="replica-row",
    )  # fmt: skip


def _form_input(field: str, placeholder: str, element_id: str, width: str) -> rx.Component:
    """An input of the create form or the canary bar, bound to its field of ``EndpointsState.form``."""
    box: rx.Component = rx.input(placeholder=placeholder, value=getattr(FORM, field), id=element_id, width=width,
                                 on_change=lambda value: EndpointsState.set_form(field, value))  # fmt: skip
    return box


def _create_form() -> rx.Component:
    form: rx.Component = rx.cond(EndpointsState.can_operate, titled_card(
        "Create an endpoint",
        rx.hstack(
            _form_input("name", "name (e.g. churn)", "endpoint-name", "180px"),
            _form_input("model", "registered model", "endpoint-model", "220px"),
            _form_input("version", "version", "endpoint-version", "90px"),
            _form_input("replicas", "replicas", "endpoint-replicas", "90px"),
            rx.button("Create", on_click=EndpointsState.create, id="endpoint-create"),
            spacing="2", align="center", wrap="wrap"),
        rx.text("Each replica is a service task (mlflow models serve) on an executor; the proxy sends requests "
                "to healthy replicas by traffic share.", size="1", color_scheme="gray"),
    ))  # fmt: skip
    return form


def _changes() -> rx.Component:
    bar: rx.Component = rx.cond(EndpointsState.can_operate, rx.hstack(
        _form_input("canary_version", "canary version", "canary-version", "130px"),
        _form_input("canary_percent", "%", "canary-percent", "60px"),
        rx.button("Canary", on_click=EndpointsState.change("canary"), variant="soft", id="endpoint-canary"),
        rx.button("Promote", on_click=EndpointsState.change("promote"), variant="soft", id="endpoint-promote"),
        rx.button("Roll back", on_click=EndpointsState.change("rollback"), variant="soft", id="endpoint-rollback"),
        rx.button("Stop", on_click=EndpointsState.change("stop"), variant="soft", color_scheme="red",
                  id="endpoint-stop"),
        rx.button("Start", on_click=EndpointsState.change("start"), variant="soft", id="endpoint-start"),
        rx.button(rx.icon("trash-2", size=14), "Delete", on_click=EndpointsState.ask_delete,
                  variant="soft", color_scheme="red", id="endpoint-delete"),
        confirm_dialog(
            title=("Delete endpoint ", EndpointsState.selected, "?"),
            description="Its replicas stop, its tokens stop working and its request stats go with it; "
                        "the audit log keeps a record. Clients calling it get errors from now on.",
            confirm_label="Delete endpoint", confirm_id="endpoint-delete-confirm", on_confirm=EndpointsState.delete,
            is_open=EndpointsState.confirm_delete, on_open_change=EndpointsState.set_confirm_delete,
        ),
        spacing="2", align="center", wrap="wrap"))  # fmt: skip
    return bar


def _try_it() -> rx.Component:
    return titled_card(
        "Try it",
        rx.text("A body of MLflow's scoring protocol (dataframe_split, dataframe_records, inputs, instances); "
                "clients send it to POST /api/v1/serving/<name>/invocations with a token of the endpoint.",
                size="1", color_scheme="gray"),
        rx.text_area(value=EndpointsState.body, on_change=EndpointsState.set_body, rows="7", width="100%",
                     font_family="monospace", id="try-body"),
        rx.button("Send", on_click=EndpointsState.try_it, loading=EndpointsState.sending, id="try-send"),
        rx.cond(ANSWER.meta != "", rx.text(ANSWER.meta, size="1", id="try-meta")),
        rx.cond(ANSWER.body != "", rx.code_block(ANSWER.body, language="json", width="100%", id="try-answer")),
    )  # fmt: skip


@layout(route=routes.ML_ENDPOINTS, title="Endpoints", on_load=EndpointsState.open_page)
def endpoints_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        page_heading("Serving endpoints", rx.spacer(),
                     rx.button(rx.icon("refresh-cw", size=14), "Refresh", on_click=EndpointsState.refresh,
                               variant="soft", id="endpoints-refresh")),
        error_callout(EndpointsState.error, width="100%"),
        _create_form(),
        rx.cond(EndpointsState.message != "", rx.callout(EndpointsState.message, icon="check", color_scheme="green",
                                                          size="1", id="endpoint-message")),
        error_callout(EndpointsState.action_error, "endpoint-error"),
        data_table(("Endpoint", "Health", "Replicas", "Traffic", "Revision"),
                   rx.foreach(EndpointsState.rows, _endpoint_row), "endpoints-table", plain=True),
        rx.cond(EndpointsState.loaded & (EndpointsState.rows.length() == 0) & (EndpointsState.error == ""),
                rx.text("No endpoint yet: create one for a registered model version.", color_scheme="gray",
                        id="endpoints-empty")),
        rx.cond(DETAIL.id != "", rx.vstack(
            rx.hstack(rx.heading(EndpointsState.selected, size="5", id="endpoint-title"),
                      _health_badge(DETAIL.health), rx.text(DETAIL.traffic, size="2"),
                      rx.cond(DETAIL.logs_href != "", rx.link("logs", href=DETAIL.logs_href, size="2",
                                                              id="endpoint-logs")),
                      spacing="3", align="center", id="endpoint-header"),
            _changes(),
            data_table(("Version", "State", "Address", "PID", "Attempt / restarts", "Logs", "Last error"),
                       rx.foreach(EndpointsState.replicas, _replica_row), "endpoint-replicas", plain=True),
            rx.text(DETAIL.totals, size="2", id="endpoint-totals"),
            rx.plotly.basic(data=EndpointsState.chart, config=PLOT_CONFIG, width="100%", id="endpoint-chart"),
            _try_it(),
            spacing="3", width="100%", margin_top="8px")),
        spacing="4", width="100%",
    )  # fmt: skip
    return content
