"""Overview: the control plane's health, and the selected project's runs of the last day by status."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.layout import layout, section_column
from control_room.components.live import live_intro, live_ticker
from control_room.components.status import status_badge
from control_room.state.health import HealthState
from control_room.state.overview import OverviewState

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
# A dict var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
COUNTS: Any = OverviewState.counts


def _health_card() -> rx.Component:
    badge: rx.Component = rx.match(
        HealthState.database,
        ("ok", rx.badge("database ok", color_scheme="grass", variant="soft", id="health-database")),
        ("checking", rx.badge("checking…", color_scheme="gray", variant="soft", id="health-database")),
        rx.badge(HealthState.database, color_scheme="red", variant="soft", id="health-database"),
    )
    card: rx.Component = rx.card(
        rx.vstack(
            rx.text("Control plane", size="2", color_scheme="gray", weight="medium"),
            rx.hstack(
                badge,
                rx.cond(
                    HealthState.schema_version != "",
                    rx.text("schema ", rx.code(HealthState.schema_version, id="schema-version"), size="2"),
                ),
                align="center",
                spacing="3",
            ),
            rx.cond(HealthState.detail != "", rx.text(HealthState.detail, color_scheme="red", size="2",
                                                       id="health-detail")),
            spacing="3",
        ),
        size="2",
    )  # fmt: skip
    return card


def _count_card(status: str) -> rx.Component:
    card: rx.Component = rx.link(
        rx.card(
            rx.vstack(
                status_badge(status),
                rx.text(
                    COUNTS.get(status, 0), size="7", weight="bold", class_name="tabular", id=f"overview-count-{status}"
                ),
                spacing="2",
            ),
            size="2",
        ),
        href=routes.runs_filtered(status=status, time_range="24h"),
        underline="none",
        color="inherit",
        id=f"overview-{status}",
    )
    return card


@layout(route=routes.HOME, title="Overview", on_load=[OverviewState.load, HealthState.load_health])
def home_page() -> rx.Component:
    """Health, then the last day's runs per status, each linking to the runs list."""
    return section_column(
        _health_card(),
        live_intro(rx.text(rx.cond(OverviewState.project_name != "",
                                   rx.fragment("Runs of ", rx.text.strong(OverviewState.project_name), " in "),
                                   "Runs in "),
                           OverviewState.scope_label, ", last 24 hours", size="2", color_scheme="gray",
                           id="overview-scope"),
                   OverviewState.updated_at, OverviewState.is_loading),
        rx.grid(*(_count_card(status) for status in STATUSES), columns=rx.breakpoints(initial="2", sm="3", md="5"),
                spacing="3", width="100%"),
        live_ticker(3000, OverviewState.tick),
    )  # fmt: skip
