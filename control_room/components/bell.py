"""The notification bell of the page header: unread count, the latest notifications, mark read."""

from __future__ import annotations

import reflex as rx

from control_room import routes
from control_room.components.live import live_ticker
from control_room.state.bell import KEEP_ALIVE_MS, BellState
from control_room.state.rows import BellItem

SEVERITY_COLORS = {"info": "blue", "warning": "amber", "critical": "red"}


def severity_badge(severity: rx.Var[str] | str) -> rx.Component:
    """info blue, warning amber, critical red."""
    value = rx.Var.create(severity).to(str)
    color = rx.Var.create(SEVERITY_COLORS).to(dict)[value].to(str)
    badge: rx.Component = rx.badge(value, color_scheme=color, variant="soft", size="1", class_name="severity-badge")
    return badge


def _item(item: BellItem) -> rx.Component:
    row: rx.Component = rx.box(
        rx.hstack(
            rx.cond(item.unread, rx.box(class_name="unread-dot"), rx.box(width="8px", flex_shrink="0")),
            rx.vstack(
                rx.hstack(severity_badge(item.severity), rx.text(item.when, size="1", color_scheme="gray"),
                          spacing="2", align="center"),
                rx.text(item.title, size="2", weight=rx.cond(item.unread, "bold", "regular"), class_name="clamp-2"),
                spacing="1", min_width="0",
            ),
            spacing="2", align="start",
        ),
        on_click=BellState.open_item(item.id, item.href),
        class_name="bell-item",
        data_unread=rx.cond(item.unread, "true", "false"),
    )  # fmt: skip
    return row


def notification_bell() -> rx.Component:
    """An icon with the unread count; its dropdown lists the latest notifications."""
    bell: rx.Component = rx.box(
        rx.popover.root(
            rx.popover.trigger(
                rx.box(
                    rx.icon_button(rx.icon("bell", size=16), variant="soft", color_scheme="gray", size="2",
                                   aria_label="Notifications", id="bell"),
                    rx.cond(BellState.unread > 0,
                            rx.badge(BellState.unread, color_scheme="red", variant="solid", radius="full", size="1",
                                     class_name="bell-count", id="bell-count")),
                    position="relative",
                ),
            ),
            rx.popover.content(
                rx.hstack(
                    rx.text("Notifications", weight="bold", size="2"),
                    rx.spacer(),
                    rx.button("Mark all read", size="1", variant="ghost", on_click=BellState.mark_all_read,
                              disabled=BellState.unread == 0, id="bell-mark-all"),
                    width="100%", align="center",
                ),
                rx.cond(BellState.items.length() > 0,
                        rx.vstack(rx.foreach(BellState.items, _item), spacing="1", width="100%", margin_top="8px"),
                        rx.text("Nothing yet.", size="2", color_scheme="gray", margin_top="8px")),
                rx.link("All incidents", href=routes.ALERTS, size="2", margin_top="8px", display="block"),
                width="380px", max_height="70vh", overflow_y="auto", id="bell-dropdown",
            ),
        ),
        live_ticker(KEEP_ALIVE_MS, BellState.keep_alive),
        on_mount=BellState.start,
    )  # fmt: skip
    return bell
