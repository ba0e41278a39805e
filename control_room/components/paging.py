"""Pieces shared by list pages: Previous / Next buttons of a KeysetPages state."""

from __future__ import annotations

from typing import Any

import reflex as rx


def keyset_pager(state: Any, prefix: str) -> rx.Component:
    """Previous, "Page N", Next of a KeysetPages state; ids ``<prefix>-previous`` and ``<prefix>-next``."""
    pager: rx.Component = rx.hstack(
        rx.button("Previous", on_click=state.previous_page, disabled=state.page <= 1, variant="soft",
                  id=f"{prefix}-previous"),
        rx.text("Page ", state.page, size="2"),
        rx.button("Next", on_click=state.next_page, disabled=~state.has_next, variant="soft", id=f"{prefix}-next"),
        spacing="3", align="center",
    )  # fmt: skip
    return pager
