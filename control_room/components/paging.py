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


def pager_bar(
    label: rx.Component,
    on_back: Any,
    on_forward: Any,
    *,
    back_disabled: Any,
    forward_disabled: Any,
    words: tuple[str, str] = ("Previous", "Next"),
    prefix: str | None = None,
    size: str = "2",
) -> rx.Component:
    """``label`` (which page this is) at the left; at the right a back and a forward button (``words``, each with
    a chevron pointing its way) in ``size``, with ids ``<prefix>-<word>`` (lower case) when a ``prefix`` is given."""
    back, forward = words
    bar: rx.Component = rx.hstack(
        label,
        rx.spacer(),
        rx.button(rx.icon("chevron-left", size=14), back, variant="soft", color_scheme="gray", size=size,
                  disabled=back_disabled, on_click=on_back, id=prefix and f"{prefix}-{back.lower()}"),
        rx.button(forward, rx.icon("chevron-right", size=14), variant="soft", color_scheme="gray", size=size,
                  disabled=forward_disabled, on_click=on_forward, id=prefix and f"{prefix}-{forward.lower()}"),
        width="100%",
        align="center",
    )  # fmt: skip
    return bar


def newer_older_pager(state: Any, label: rx.Component, prefix: str | None = None) -> rx.Component:
    """``label`` (which page this is) at the left; "Newer" and "Older" buttons of a paged state (``page``, ``has_next``,
    ``previous_page``, ``next_page``) at the right,
    with ids ``<prefix>-newer`` and ``<prefix>-older`` when a ``prefix`` is given."""
    return pager_bar(label, state.previous_page, state.next_page, back_disabled=state.page <= 1,
                     forward_disabled=~state.has_next, words=("Newer", "Older"), prefix=prefix)  # fmt: skip
