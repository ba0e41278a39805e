"""Titles of a page's content and of its sections: the row a page opens with, and a card under a heading."""

from __future__ import annotations

from typing import Any

import reflex as rx


def page_heading(title: Any, *beside: rx.Component, heading_id: str | None = None, **props: Any) -> rx.Component:
    """The row a page's content opens with: its title, then what stands beside it (a search box, a summary, a
    button); full width, centred. ``props`` go to the row (``spacing``, …)."""
    parts = title if isinstance(title, tuple) else (title,)  # a tuple: text and vars, one after the other
    heading: rx.Component = (
        rx.heading(*parts, size="6") if heading_id is None else rx.heading(*parts, size="6", id=heading_id)
    )
    row: rx.Component = rx.hstack(heading, *beside, **({"width": "100%", "align": "center"} | props))
    return row


def section_card(title: str, *children: rx.Component, card_id: str | None = None, **props: Any) -> rx.Component:
    """A full-width card: the section's title over ``children``, in a column (``props`` go to the column)."""
    column: rx.Component = rx.vstack(rx.heading(title, size="3"), *children, **props)
    card: rx.Component = (
        rx.card(column, width="100%") if card_id is None else rx.card(column, width="100%", id=card_id)
    )
    return card


def titled_card(
    title: Any, *children: rx.Component, element_id: str | None = None, spacing: str = "2", **props: Any
) -> rx.Component:
    """A full-width card of a detail page: a small title (a text or var, or a row that opens with one) over
    ``children`` in a column; ``props`` go to the card (``grid_column``, …)."""
    heading = title if isinstance(title, rx.Component) else rx.text(title, size="2", weight="medium")
    card: rx.Component = rx.card(
        rx.vstack(heading, *children, spacing=spacing, width="100%"), width="100%", id=element_id, **props
    )
    return card
