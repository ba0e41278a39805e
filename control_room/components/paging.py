"""Pieces shared by list pages: Previous / Next (or Newer / Older) buttons of a KeysetPages state."""

from __future__ import annotations

from typing import Any

import reflex as rx


def keyset_pager(state: Any, prefix: str | None = None, *, size: str | None = None) -> rx.Component:
    """Previous, "Page N", Next of a KeysetPages state; ids ``<prefix>-previous`` and ``<prefix>-next`` when a
    ``prefix`` is given; the buttons in ``size`` when given."""
    pager: rx.Component = rx.hstack(
        rx.button("Previous", on_click=state.previous_page, disabled=state.page <= 1, variant="soft", size=size,
                  id=prefix and f"{prefix}-previous"),
        rx.text("Page ", state.page, size="2"),
        rx.button("Next", on_click=state.next_page, disabled=~state.has_next, variant="soft", size=size,
                  id=prefix and f"{prefix}-next"),
        spacing="3", align="center",
    )  # fmt: skip
    return pager


def newer_older_pager(state: Any, label: rx.Component, prefix: str | None = None) -> rx.Component:
    """``label`` (which page this is) at the left; "Newer" and "Older" buttons of a paged state (``page``, ``has_next``,
    ``previous_page``, ``next_page``) at the right,
    with ids ``<prefix>-newer`` and ``<prefix>-older`` when a ``prefix`` is given."""
    bar: rx.Component = rx.hstack(
        label,
        rx.spacer(),
        rx.button(rx.icon("chevron-left", size=14), "Newer", variant="soft", color_scheme="gray", size="2",
                  disabled=state.page <= 1, on_click=state.previous_page, id=prefix and f"{prefix}-newer"),
        rx.button("Older", rx.icon("chevron-right", size=14), variant="soft", color_scheme="gray", size="2",
                  disabled=~state.has_next, on_click=state.next_page, id=prefix and f"{prefix}-older"),
        width="100%",
        align="center",
    )  # fmt: skip
    return bar
