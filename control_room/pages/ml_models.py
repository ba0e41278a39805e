"""Model registry: the project's registered models, a model's versions (source run, signature, metrics,
aliases) and setting an alias such as `champion` or `challenger` (operators; `champion` needs an admin;
optionally checked against the current holder's metric), each change audited."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import titled_card
from control_room.components.layout import layout
from control_room.components.paging import keyset_pager
from control_room.components.table_rows import body_row, number_cell, opener_row, text_cell
from control_room.components.tables import data_table
from control_room.state.ml import ALIASES, ModelsState
from control_room.state.rows import KeyValue, ModelRow, ModelVersionRow

# A dataclass var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
FORM: Any = ModelsState.form


def _model_row(row: ModelRow) -> rx.Component:
    return opener_row(
        row.name, ModelsState.open_model(row.name), "model-name",
        number_cell(row.latest),
        text_cell(row.aliases, size="2"),
        text_cell(row.updated, size="1"),
        class_name="model-row",
    )  # fmt: skip


def _version_row(row: ModelVersionRow) -> rx.Component:
    return body_row(
        text_cell("v", row.version, weight="medium"),
        rx.table.cell(rx.hstack(rx.foreach(row.aliases, lambda alias: rx.badge("@", alias, color_scheme=rx.cond(
            alias == "champion", "green", "indigo"), size="1")), spacing="1")),
        rx.table.cell(rx.badge(row.status, variant="soft", size="1")),
        rx.table.cell(rx.vstack(
            rx.cond(row.run_href != "", rx.link(row.run_name, href=row.run_href, size="2", class_name="version-run"),
                    rx.text(row.run_name, size="2")),
            rx.cond(row.lakehouse_run_id != "",
                    rx.link("control-room run", href="/runs/" + row.lakehouse_run_id, size="1")),
            spacing="0")),
        number_cell(row.metrics, size="1"),
        text_cell(row.signature, size="1", color_scheme="gray", max_width="320px"),
        text_cell(row.created, size="1"),
        class_name="model-version-row",
    )  # fmt: skip


def _alias_badge(entry: KeyValue) -> rx.Component:
    badge: rx.Component = rx.badge("@", entry.key, " → v", entry.value, size="2", variant="surface",
                                   class_name="model-alias")  # fmt: skip
    return badge


def _alias_form() -> rx.Component:
    form: rx.Component = rx.cond(ModelsState.can_operate, titled_card(
        "Set an alias",
        rx.hstack(
            rx.select(list(ALIASES), value=FORM.alias, on_change=lambda value: ModelsState.set_form("alias", value),
                      id="alias-name"),
            rx.text("→ version", size="2"),
            rx.select(ModelsState.version_choices, value=FORM.version,
                      on_change=lambda value: ModelsState.set_form("version", value), id="alias-version"),
            rx.input(placeholder="check metric (e.g. auc), optional", value=FORM.gate_metric,
                     on_change=lambda value: ModelsState.set_form("gate_metric", value), width="240px",
                     id="alias-gate"),
            rx.button("Set alias", on_click=ModelsState.save_alias, loading=ModelsState.saving, id="alias-save"),
            spacing="2", align="center", wrap="wrap",
        ),
        rx.text("Operators set aliases; @champion needs an admin. With a check metric the version must be at least "
                "as good as the one holding the alias. Every change is audited.", size="1", color_scheme="gray"),
        rx.cond(ModelsState.message != "", rx.callout(ModelsState.message, icon="check", color_scheme="green",
                                                       size="1", id="alias-message")),
        error_callout(ModelsState.alias_error, "alias-error"),
    ))  # fmt: skip
    return form


@layout(route=routes.ML_MODELS, title="Models", on_load=ModelsState.open_page)
def models_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        rx.heading("Model registry", size="6"),
        error_callout(ModelsState.error, width="100%"),
        data_table(("Model", "Latest", "Aliases", "Updated"), rx.foreach(ModelsState.models, _model_row),
                   "models-table", plain=True),
        rx.cond(ModelsState.loaded & (ModelsState.models.length() == 0) & (ModelsState.error == ""),
                rx.text("No registered model yet: a training task registers one with mlflow.register_model.",
                        color_scheme="gray", id="models-empty")),
        keyset_pager(ModelsState, "models"),
        rx.cond(ModelsState.model != "", rx.vstack(
            rx.hstack(rx.heading(ModelsState.model, size="5", id="model-title"),
                      rx.foreach(ModelsState.model_aliases, _alias_badge), spacing="2", align="center"),
            rx.cond(ModelsState.model_description != "",
                    rx.text(ModelsState.model_description, size="2", color_scheme="gray")),
            _alias_form(),
            data_table(("Version", "Aliases", "Status", "Source run", "Metrics", "Signature", "Created"),
                       rx.foreach(ModelsState.versions, _version_row), "model-versions", plain=True),
            spacing="3", width="100%", margin_top="8px")),
        spacing="4", width="100%",
    )  # fmt: skip
    return content
