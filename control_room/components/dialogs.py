"""Confirmation dialogs for actions that cannot be undone (revoking an executor's or an API token)."""

from __future__ import annotations

from typing import Any

import reflex as rx


def confirm_dialog(
    *,
    title: tuple[Any, ...],
    description: str,
    confirm_label: str,
    confirm_id: str,
    on_confirm: Any,
    is_open: rx.Var[bool],
    on_open_change: Any,
) -> rx.Component:
    """An alert dialog: the title, what happens, "Keep it" and a red confirm button."""
    dialog: rx.Component = rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(*title),
            rx.alert_dialog.description(description, size="2"),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Keep it", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(rx.button(confirm_label, color_scheme="red", on_click=on_confirm,
                                                 id=confirm_id)),
                spacing="3",
                justify="end",
                margin_top="16px",
            ),
        ),
        open=is_open,
        on_open_change=on_open_change,
    )  # fmt: skip
    return dialog
