"""The user menu's way to the person's API tokens (the page is control_room/pages/api_tokens.py)."""

from __future__ import annotations

import reflex as rx

from control_room import routes


def api_tokens_link() -> rx.Component:
    """A small key button beside "Sign out" that opens the API tokens page."""
    link: rx.Component = rx.tooltip(
        rx.link(
            rx.icon_button(rx.icon("key-round", size=14), size="1", variant="soft", color_scheme="gray",
                           aria_label="API tokens"),
            href=routes.API_TOKENS,
            id="user-menu-api-tokens",
        ),
        content="API tokens",
    )  # fmt: skip
    return link
