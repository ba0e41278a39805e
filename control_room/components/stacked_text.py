"""Two lines of text stacked without a gap: a name over a grey detail (a table row's main cell), a grey label
over its value (a panel's facts)."""

from __future__ import annotations

from typing import Any

import reflex as rx


def name_over_detail(name: Any, detail: Any) -> rx.Component:
    """A name in medium weight over a small grey line saying more (a host, a type, a subject)."""
    lines: rx.Component = rx.vstack(
        rx.text(name, weight="medium", size="2"), rx.text(detail, size="1", color_scheme="gray"), spacing="0"
    )
    return lines


def fact(label: Any, value: Any) -> rx.Component:
    """A small grey label over its value, as in a grid of a thing's facts."""
    lines: rx.Component = rx.vstack(
        rx.text(label, size="1", color_scheme="gray"), rx.text(value, size="2"), spacing="0"
    )
    return lines
