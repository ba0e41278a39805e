"""Live updates: a hidden client-side ticker that fires a refresh event while the page is open, and
the small "Live · updated at" label next to live tables."""

from __future__ import annotations

import reflex as rx
from reflex.event import EventType


def live_ticker(interval_ms: int, on_tick: EventType[str]) -> rx.Component:
    """Calls ``on_tick`` every ``interval_ms`` while mounted; it stops when the page is left or closed,
    so the server never refreshes for a browser that is gone."""
    ticker: rx.Component = rx.box(
        rx.moment(interval=interval_ms, on_change=on_tick, format="x"),
        display="none",
        aria_hidden="true",
    )
    return ticker


def updated_label(updated_at: rx.Var[str], is_loading: rx.Var[bool]) -> rx.Component:
    """A pulsing dot, "Live", and when the rows were last refreshed (UTC)."""
    label: rx.Component = rx.hstack(
        rx.cond(is_loading, rx.spinner(size="1"), rx.box(class_name="live-dot", color=rx.color("grass", 9))),
        rx.text("Live", size="1", weight="medium"),
        rx.cond(updated_at != "", rx.text("· updated ", updated_at, " UTC", size="1", color_scheme="gray")),
        spacing="1",
        align="center",
        id="live-indicator",
    )
    return label


def live_intro(lead: rx.Component, updated_at: rx.Var[str], is_loading: rx.Var[bool], *actions: rx.Component,
               **props: object) -> rx.Component:
    """The line above a live page's content: what it shows, when it was last read, then its buttons."""
    bar: rx.Component = rx.hstack(lead, rx.spacer(), updated_label(updated_at, is_loading), *actions,
                                  **({"width": "100%", "align": "center"} | props))  # fmt: skip
    return bar
