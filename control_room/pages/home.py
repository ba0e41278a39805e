"""Home page: the product name (from the shell) and the control plane's health (schema version)."""

from __future__ import annotations

import reflex as rx

from control_room import routes
from control_room.components.layout import layout
from control_room.state.health import HealthState


def _health_line() -> rx.Component:
    badge: rx.Component = rx.cond(
        HealthState.database == "ok",
        rx.badge("database ok", color_scheme="green", id="health-database"),
        rx.badge(HealthState.database, color_scheme="red", id="health-database"),
    )
    line: rx.Component = rx.hstack(
        badge,
        rx.cond(
            HealthState.schema_version != "",
            rx.text("schema ", rx.code(HealthState.schema_version, id="schema-version")),
        ),
        align="center",
    )
    return line


@layout(route=routes.HOME, title="Home", on_load=HealthState.load_health)
def home_page() -> rx.Component:
    """Health of the control plane; runs, executors and governance pages come later."""
    page: rx.Component = rx.vstack(
        rx.heading("Control plane", size="7", id="home-title"),
        _health_line(),
        rx.cond(
            HealthState.detail != "",
            rx.text(HealthState.detail, color_scheme="red", id="health-detail"),
        ),
        spacing="4",
    )
    return page
