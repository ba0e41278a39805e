"""The table of a list page or panel: one header row of labels over a body, in the look every page shares."""

from __future__ import annotations

from collections.abc import Sequence
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
