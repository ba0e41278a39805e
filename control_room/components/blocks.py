"""Blocks that several pages share: a list page's title with its search box at the right."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.components.headings import page_heading
from control_room.components.search import text_search


def searched_heading(title: str, state: Any, placeholder: str, element_id: str, width: str) -> rx.Component:
    """A list page's title with the search box of ``state`` (its ``text`` and ``set_text``) at the right."""
    return page_heading(title, rx.spacer(), text_search(state.text, state.set_text, placeholder, element_id, width))
