"""Status and level badges, with one colour per state used everywhere (tables, charts, headers)."""

from __future__ import annotations

import reflex as rx

# Radix colour names for badges; HEX (step 9 of the same Radix scales) for plotly charts.
STATUS_COLORS: dict[str, str] = {
    "pending": "gray",
    "queued": "gray",
    "claimed": "cyan",
    "running": "blue",
    "succeeded": "grass",
    "failed": "red",
    "timed_out": "crimson",
    "lost": "purple",
    "cancelled": "orange",
    "skipped": "gray",
    # executors
    "online": "grass",
    "draining": "amber",
    "offline": "red",
    "revoked": "gray",
}
STATUS_HEX: dict[str, str] = {
    "pending": "#8B8D98",
    "queued": "#8B8D98",
    "claimed": "#00A2C7",
    "running": "#0090FF",
    "succeeded": "#46A758",
    "failed": "#E5484D",
    "timed_out": "#E93D82",
    "lost": "#8E4EC6",
    "cancelled": "#F76B15",
    "skipped": "#B9BBC6",
}
LEVEL_COLORS: dict[str, str] = {"debug": "gray", "info": "blue", "warning": "amber", "error": "red"}
ACTIVE = ("queued", "running", "claimed", "pending")


def status_badge(status: rx.Var[str] | str, *, size: str = "1", **props: object) -> rx.Component:
    """A soft badge in the status's colour, with a pulsing dot while the work is live."""
    status_var = rx.Var.create(status).to(str)
    color = rx.Var.create(STATUS_COLORS).to(dict)[status_var].to(str)
    badge: rx.Component = rx.badge(
        rx.cond(
            (status_var == "running") | (status_var == "claimed"),
            rx.box(class_name="live-dot"),
        ),
        status_var.replace("_", " "),
        color_scheme=color,
        variant="soft",
        radius="full",
        size=size,
        class_name="status-badge",
        **props,
    )
    return badge


def level_badge(level: rx.Var[str]) -> rx.Component:
    """An event level, coloured (debug grey, info blue, warning amber, error red)."""
    color = rx.Var.create(LEVEL_COLORS).to(dict)[level].to(str)
    badge: rx.Component = rx.badge(level, color_scheme=color, variant="soft", size="1", class_name="level-badge")
    return badge


def badge_list(values: rx.Var[list[str]], color: str) -> rx.Component:
    """A wrapping row of small badges, one a value (an executor's engines or labels, a rule's match)."""
    badges: rx.Component = rx.flex(
        rx.foreach(values, lambda value: rx.badge(value, variant="surface", color_scheme=color, size="1")),
        wrap="wrap",
        gap="4px",
    )
    return badges
