"""The app-shell 404: an unknown address, inside the navigation."""

from __future__ import annotations

import reflex as rx

from control_room import routes
from control_room.components.layout import layout
from control_room.components.notice import not_found_notice
from control_room.state.overview import ComingLaterState

NOT_FOUND_DETAIL = (
    "The address may be mistyped, or the page was moved. Everything is reachable from the navigation on the left."
)


def not_found_panel() -> rx.Component:
    """What an unknown address shows."""
    return not_found_notice("This page does not exist", element_id="not-found", detail=NOT_FOUND_DETAIL)


@layout(route=routes.NOT_FOUND, title="Page not found", on_load=ComingLaterState.check)
def not_found_page() -> rx.Component:
    """Unknown addresses, inside the app shell."""
    return not_found_panel()
