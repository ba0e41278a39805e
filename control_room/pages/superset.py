"""A saved dashboard of the project, pushed to Superset, embedded with Superset's SDK and a guest token minted
for the signed-in user (their access policies' row filters applied by Superset)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import page_heading
from control_room.components.layout import layout
from control_room.components.live import live_ticker
from control_room.components.superset_embed import superset_embed
from control_room.state.superset import REFRESH_MS, SupersetState

# A dataclass var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
EMBED: Any = SupersetState.embed


@layout(route=routes.SUPERSET_EMBED, title="Superset dashboard", on_load=SupersetState.open_embed)
def superset_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        page_heading(
            ("Superset · ", EMBED.slug),
            rx.spacer(),
            rx.link(rx.button(rx.icon("arrow-left", size=14), "Dashboards", variant="soft"), href=routes.DASHBOARDS),
            heading_id="superset-title",
        ),
        error_callout(SupersetState.error, "superset-error", size="2"),
        rx.cond(EMBED.rls_note != "", rx.text(EMBED.rls_note, size="2", color_scheme="gray", id="superset-rls-note")),
        rx.cond(EMBED.guest_token != "",
                superset_embed(dashboard_id=EMBED.embedded_uuid, superset_domain=EMBED.superset_url,
                               guest_token=EMBED.guest_token, height="1500px", id="superset-embed")),
        live_ticker(REFRESH_MS, SupersetState.refresh_token),
        spacing="3", width="100%", id="superset-page",
    )  # fmt: skip
    return content


def push_button(selected: Any, can_operate: Any) -> rx.Component:
    """"Push to Superset" for operators on a saved dashboard, when a Superset is configured."""
    button: rx.Component = rx.cond(
        SupersetState.enabled & can_operate & selected.startswith("saved:"),
        rx.button(rx.icon("upload", size=14), "Push to Superset", on_click=SupersetState.push(selected),
                  loading=SupersetState.pushing, variant="soft", id="dashboard-push-superset"),
    )  # fmt: skip
    return button


def push_messages() -> rx.Component:
    """The last push's outcome."""
    messages: rx.Component = rx.fragment(
        error_callout(SupersetState.push_error, "superset-push-error"),
    )  # fmt: skip
    return messages
