"""Placeholder pages of features a later release adds: clearly marked as not available yet."""

from __future__ import annotations

import reflex as rx

from control_room import routes
from control_room.components.layout import layout
from control_room.pages.not_found import not_found_panel
from control_room.state.overview import ComingLaterState


@layout(route=routes.COMING_LATER, title="Coming later", on_load=ComingLaterState.check)
def coming_later_page() -> rx.Component:
    """What the feature will be, and that it does not work yet (an unknown feature: the app's 404)."""
    card: rx.Component = rx.center(
        rx.card(
            rx.vstack(
                rx.badge("Not yet available", color_scheme="amber", variant="soft", size="2", id="not-available"),
                rx.heading(ComingLaterState.feature_title, size="5", id="later-title"),
                rx.text(
                    "This part of the control room is planned for a later release. Nothing on this page works "
                    "yet; runs, executors and artifacts are available from the navigation.",
                    size="2",
                    color_scheme="gray",
                ),
                rx.link("Go to runs", href=routes.RUNS),
                spacing="3",
                align="start",
            ),
            size="3",
            max_width="520px",
        ),
        padding_top="48px",
    )
    page: rx.Component = rx.cond(ComingLaterState.is_known, card, not_found_panel())
    return page
