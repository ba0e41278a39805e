"""Pieces of the forms and dialogs of every page: a labelled field, a select of fixed choices, the error of a
read or form, the Cancel / confirm bar, and the dialog that frames a form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import reflex as rx


def field_label(text: Any, *children: rx.Component) -> rx.Component:
    """A form field: its label above its control(s)."""
    box: rx.Component = rx.vstack(rx.text(text, size="2", weight="medium"), *children, spacing="1", width="100%")
    return box


def choice_select(
    value: Any,
    options: Sequence[tuple[str, str]],
    on_change: Any,
    element_id: str,
    width: str = "100%",
    **trigger_props: Any,
) -> rx.Component:
    """A select of fixed ``(value, label)`` choices; ``trigger_props`` (a min_width) go to its trigger."""
    box: rx.Component = rx.select.root(
        rx.select.trigger(width=width, id=element_id, **trigger_props),
        rx.select.content(*(rx.select.item(label, value=key) for key, label in options)),
        value=value,
        on_change=on_change,
    )
    return box


def error_callout(message: rx.Var[str], element_id: str | None = None, **props: Any) -> rx.Component:
    """A red callout while ``message`` is not empty: what the last read or action was refused for."""
    box: rx.Component = rx.cond(
        message != "",
        rx.callout(message, **({"icon": "triangle-alert", "color_scheme": "red", "size": "1"} | props), id=element_id),
    )
    return box


def dialog_actions(
    label: str,
    on_click: Any,
    busy: Any,
    button_id: str,
    *,
    disabled: Any = False,
    cancel: str = "Cancel",
    icon: str = "check",
    start: Sequence[rx.Component] = (),
) -> rx.Component:
    """The bar at the foot of a form dialog: ``cancel`` (closes it) and the confirm button (its ``icon`` in front),
    spinning while busy; ``start`` (a Delete button) stands apart at the bar's left."""
    lead = [*start, rx.spacer()] if start else []
    bar: rx.Component = rx.hstack(
        *lead,
        rx.dialog.close(rx.button(cancel, variant="soft", color_scheme="gray")),
        rx.button(rx.cond(busy, rx.spinner(size="2"), rx.icon(icon, size=14)), label, on_click=on_click,
                  disabled=busy | disabled, id=button_id),
        justify="end", width="100%", spacing="3",
    )  # fmt: skip
    return bar


def form_dialog(
    title: Any,
    *children: rx.Component,
    is_open: rx.Var[bool],
    on_open_change: Any,
    max_width: str | None = None,
    description: str | tuple[Any, ...] = "",
    trigger: rx.Component | None = None,
    **content_props: Any,
) -> rx.Component:
    """A dialog framing a form: its title, an optional grey description (a sentence, or its parts: text and
    vars), then ``children``; opened by ``trigger`` when given (else by setting ``is_open``). ``content_props``
    (width, id) go to the dialog's box."""
    heading: list[rx.Component] = [title if isinstance(title, rx.Component) else rx.dialog.title(title)]
    if description:
        parts = description if isinstance(description, tuple) else (description,)
        heading.append(rx.dialog.description(*parts, size="2", color_scheme="gray"))
    look = content_props if max_width is None else {"max_width": max_width} | content_props
    dialog: rx.Component = rx.dialog.root(
        *([] if trigger is None else [rx.dialog.trigger(trigger)]),
        rx.dialog.content(*heading, *children, **look),
        open=is_open,
        on_open_change=on_open_change,
    )
    return dialog
