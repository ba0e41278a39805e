"""The tables of list pages, panels and query results: a header row of labels over a body, in one look."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import reflex as rx


def data_table(
    head: Sequence[str | rx.Component],
    body: rx.Component,
    element_id: str,
    *,
    right: Sequence[str] = (),
    plain: bool = False,
    **props: Any,
) -> rx.Component:
    """A full-width table: ``head`` (labels, or header cells already built), then ``body`` (usually an
    ``rx.foreach``). Labels named in ``right`` are right-aligned (their column holds numbers). Unless ``plain``,
    the compact surface look of the list pages (rows on one line each); ``props`` go to the table itself."""
    cells = [
        label if isinstance(label, rx.Component)
        else rx.table.column_header_cell(label, text_align="right" if label in right else None)
        for label in head
    ]  # fmt: skip
    look = {} if plain else {"variant": "surface", "size": "1", "class_name": "data-table"}
    table: rx.Component = rx.table.root(
        rx.table.header(rx.table.row(*cells)),
        rx.table.body(body),
        **({"width": "100%"} | look | props),
        id=element_id,
    )
    return table


def result_table(
    columns: rx.Var[Any],
    rows: rx.Var[Any],
    *,
    cell: Callable[[Any], Any] | None = None,
    **props: Any,
) -> rx.Component:
    """The rows of a query or a file, whose columns are known only once read: a header cell per name in
    ``columns``, then a row per item of ``rows`` with each value in a cell of its own (as ``cell`` shapes it,
    plain text unless given); small, unless ``props`` (which go to the table) say otherwise."""
    shape = cell or (lambda value: value)
    table: rx.Component = rx.table.root(
        rx.table.header(rx.table.row(rx.foreach(columns, lambda name: rx.table.column_header_cell(name)))),
        rx.table.body(rx.foreach(rows, lambda row: rx.table.row(rx.foreach(row, lambda value: rx.table.cell(
            shape(value)))))),
        **({"size": "1"} | props),
    )  # fmt: skip
    return table


def opener_cell(text: Any, on_click: Any, class_name: str) -> rx.Component:
    """A body cell whose text opens the row's panel or dialog (a link without an address of its own)."""
    cell: rx.Component = rx.table.cell(rx.link(text, on_click=on_click, cursor="pointer", class_name=class_name))
    return cell
