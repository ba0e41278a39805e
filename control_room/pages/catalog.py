"""Catalog: every dataset the engines saw or OpenLineage producers sent, with namespace and name; search
by name, column, description, tag or owner; a dataset's panel with its schema, freshness, row count,
dbt test results, upstream/downstream, the runs that read or wrote it and its schema changes."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.blocks import searched_heading
from control_room.components.dialogs import panel_dialog
from control_room.components.forms import error_callout
from control_room.components.layout import layout
from control_room.components.paging import keyset_pager
from control_room.components.stacked_text import fact
from control_room.components.table_rows import opener_row, text_cell
from control_room.components.tables import data_table
from control_room.state.catalog import CatalogState
from control_room.state.rows import CatalogRow, ColumnRow, LineRow

# Dict and dataclass vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
LINES: Any = CatalogState.lines
FACTS: Any = CatalogState.facts
SELECTED: Any = CatalogState.selected


def _row(row: CatalogRow) -> rx.Component:
    return opener_row(
        row.name, CatalogState.open_dataset(row.id), "catalog-name",
        rx.table.cell(rx.badge(row.kind, variant="surface", size="1")),
        text_cell(row.namespace, size="1", color_scheme="gray", class_name="truncate"),
        text_cell(row.columns, class_name="tabular"),
        text_cell(row.owner, size="1"),
        class_name="catalog-row",
    )  # fmt: skip


def _column(column: ColumnRow) -> rx.Component:
    item: rx.Component = rx.table.row(
        rx.table.cell(rx.code(column.name, variant="ghost")),
        text_cell(column.type, size="1"),
        text_cell(column.description, size="1", color_scheme="gray"),
        class_name="catalog-column",
    )
    return item


def _lines(key: str, title: str, empty: str) -> rx.Component:
    def line(entry: LineRow) -> rx.Component:
        item: rx.Component = rx.hstack(
            rx.box(width="8px", height="8px", border_radius="50%", background=rx.color(entry.tone, 9), flex_shrink="0"),
            rx.text(entry.title, size="2", weight="medium"),
            rx.text(entry.detail, size="1", color_scheme="gray"),
            spacing="2", align="center", class_name=f"catalog-{key}-line",
        )  # fmt: skip
        return item

    section: rx.Component = rx.vstack(
        rx.heading(title, size="3"),
        rx.cond(LINES[key].length() > 0, rx.vstack(rx.foreach(LINES[key], line), spacing="1"),
                rx.text(empty, size="1", color_scheme="gray")),
        spacing="2", width="100%", id=f"catalog-{key.replace('_', '-')}",
    )  # fmt: skip
    return section


def _panel() -> rx.Component:
    header = (
        rx.vstack(rx.dialog.title(SELECTED.name, id="dataset-name"),
                  rx.text(SELECTED.description, size="2", color_scheme="gray"), spacing="1"),
        rx.spacer(),
    )
    return panel_dialog(
        header,
        error_callout(CatalogState.panel_error),
        rx.grid(
            rx.foreach(FACTS, lambda pair: fact(pair[0], pair[1])),
            columns="3", spacing="3", width="100%", margin_y="12px", id="dataset-facts",
        ),
        rx.heading("Schema", size="3"),
        data_table(("Column", "Type", "Description"), rx.foreach(CatalogState.columns, _column), "dataset-columns",
                   plain=True, size="1"),
        rx.grid(
            _lines("quality", "Quality (dbt tests)", "No tests on this dataset."),
            _lines("schema_changes", "Schema changes", "No schema change recorded."),
            _lines("upstream", "Upstream", "Nothing upstream."),
            _lines("downstream", "Downstream", "Nothing downstream."),
            columns="2", spacing="4", width="100%", margin_top="16px",
        ),
        rx.box(_lines("runs", "Runs that read or wrote it", "No run recorded."), margin_top="16px"),
        is_open=CatalogState.panel_open, on_open_change=CatalogState.set_panel_open,
        max_width="1000px", width="92vw", element_id="dataset-panel", align="start",
    )  # fmt: skip


@layout(route=routes.CATALOG, title="Catalog", on_load=CatalogState.open_page)
def catalog_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        searched_heading("Catalog", CatalogState, "Search name, column, description, tag, owner", "catalog-search",
                         "360px"),
        error_callout(CatalogState.error, size="2"),
        data_table(("Dataset", "Kind", "Namespace", "Columns", "Owner"), rx.foreach(CatalogState.rows, _row),
                   "catalog-table", plain=True),
        rx.cond(CatalogState.loaded & (CatalogState.rows.length() == 0),
                rx.text("No dataset yet: run a dbt build or send OpenLineage events to /api/v1/lineage.",
                        color_scheme="gray", id="catalog-empty")),
        keyset_pager(CatalogState, "catalog"),
        _panel(),
        spacing="4", width="100%",
    )  # fmt: skip
    return content
