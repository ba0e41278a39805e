"""Body rows of the list pages' tables: a row whose first cell opens the row's panel or detail, and cells that
hold one text."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.components.status import status_badge
from control_room.components.tables import opener_cell


def text_cell(*parts: Any, **props: Any) -> rx.Component:
    """A body cell holding one text, made of ``parts``; ``props`` go to the text (size, color_scheme, …)."""
    cell: rx.Component = rx.table.cell(rx.text(*parts, **props))
    return cell


def number_cell(*parts: Any, **props: Any) -> rx.Component:
    """A body cell holding a number, a count or an address, in tabular figures so that the column lines up."""
    return text_cell(*parts, class_name="tabular", **props)


def status_cell(status: Any) -> rx.Component:
    """A body cell holding the status's badge (a run's, a task attempt's, a backfill's, an executor's state)."""
    cell: rx.Component = rx.table.cell(status_badge(status))
    return cell


def body_row(*cells: Any, **props: Any) -> rx.Component:
    """A body row of ``cells`` (or of an ``rx.foreach`` of them); ``props`` go to the row (class_name, …)."""
    row: rx.Component = rx.table.row(*cells, **props)
    return row


def opener_row(name: Any, on_open: Any, name_class: str, *cells: rx.Component, class_name: str) -> rx.Component:
    """A body row whose first cell, ``name``, opens the row's panel or detail (``on_open``; ``name_class`` names
    that link), then ``cells``; ``class_name`` names the row."""
    return body_row(opener_cell(name, on_open, name_class), *cells, class_name=class_name)
