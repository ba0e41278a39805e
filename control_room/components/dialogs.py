"""Dialogs: confirmations of actions that cannot be undone (revoking a token), and the panels that show one thing."""

from __future__ import annotations

from collections.abc import Sequence
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
    cancel_label: str = "Keep it",
    trigger: rx.Component | None = None,
) -> rx.Component:
    """An alert dialog: the title, what happens, ``cancel_label`` and a red confirm button; opened by ``trigger``
    when given (else by setting ``is_open``)."""
    dialog: rx.Component = rx.alert_dialog.root(
        *([] if trigger is None else [rx.alert_dialog.trigger(trigger)]),
        rx.alert_dialog.content(
            rx.alert_dialog.title(*title),
            rx.alert_dialog.description(description, size="2"),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button(cancel_label, variant="soft", color_scheme="gray")),
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


def panel_dialog(
    header: Sequence[rx.Component],
    *body: rx.Component,
    is_open: rx.Var[bool],
    on_open_change: Any,
    max_width: str,
    width: str,
    element_id: str,
    **header_props: Any,
) -> rx.Component:
    """A wide dialog showing one thing (a dataset, an artifact, a run): a full-width header row of ``header`` with
    the ✕ that closes it at the right (``header_props`` go to that row), then ``body``."""
    dialog: rx.Component = rx.dialog.root(
        rx.dialog.content(
            rx.hstack(*header, rx.dialog.close(rx.icon_button(rx.icon("x", size=16), variant="ghost",
                                                              color_scheme="gray")),
                      **({"width": "100%"} | header_props)),
            *body,
            max_width=max_width, width=width, id=element_id,
        ),
        open=is_open,
        on_open_change=on_open_change,
    )  # fmt: skip
    return dialog
