"""Centred notices for pages and lists with nothing to show: an icon, what happened, and where to go instead."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes


def not_found_notice(message: str | rx.Var[str], *, element_id: str, detail: str = "") -> rx.Component:
    """Something asked for does not exist (an address, a run): say so, and link to runs and the overview."""
    notice: rx.Component = rx.center(
        rx.vstack(
            rx.icon("search-x", size=32, color=rx.color("gray", 9)),
            rx.heading(message, size="4", id=element_id, text_align="center"),
            *([rx.text(detail, size="2", color_scheme="gray", text_align="center", max_width="420px")]
              if detail else []),
            rx.hstack(rx.link("Go to runs", href=routes.RUNS), rx.link("Overview", href=routes.HOME), spacing="4"),
            align="center",
            spacing="3",
        ),
        padding="64px 16px",
    )  # fmt: skip
    return notice


def empty_state(icon: str, message: str, element_id: str | None = None) -> rx.Component:
    """A list with nothing to show: a grey icon over a grey sentence, centred in the list's place."""
    box: rx.Component = rx.center(
        rx.vstack(rx.icon(icon, size=28, color=rx.color("gray", 9)), rx.text(message, size="2", color_scheme="gray"),
                  align="center"),
        padding="48px",
        id=element_id,
    )  # fmt: skip
    return box


def empty_note(message: Any, **props: Any) -> rx.Component:
    """A list or chart with nothing to show, said in one grey sentence centred in its place; ``props`` (its
    padding or size, an id) go to the centring box."""
    note: rx.Component = rx.center(rx.text(message, size="2", color_scheme="gray"), **props)
    return note
