"""The search boxes of list pages and panels: what is typed reaches the state once typing pauses for 300 ms."""

from __future__ import annotations

from typing import Any

import reflex as rx

SEARCH_DEBOUNCE_MS = 300


def search_box(
    value: Any, on_change: Any, placeholder: str, element_id: str, width: str, *, icon_size: int = 14, **props: Any
) -> rx.Component:
    """A search input with a magnifier in front; ``props`` go to the input (its size, data attributes)."""
    box: rx.Component = rx.debounce_input(
        rx.input(rx.input.slot(rx.icon("search", size=icon_size)), placeholder=placeholder, value=value,
                 on_change=on_change, width=width, id=element_id, **props),
        debounce_timeout=SEARCH_DEBOUNCE_MS,
    )  # fmt: skip
    return box


def text_search(value: Any, set_text: Any, placeholder: str, element_id: str, width: str) -> rx.Component:
    """A plain input (no magnifier) whose text reaches ``set_text`` once typing pauses."""
    box: rx.Component = rx.input(placeholder=placeholder, value=value, on_change=set_text.debounce(SEARCH_DEBOUNCE_MS),
                                 width=width, id=element_id)  # fmt: skip
    return box
