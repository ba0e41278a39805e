"""Forms generated from JSON Schemas: one input per field (typed: switch, select, number, text, JSON),
its description and its error; and the task form (task picker, engine, the engine's fields, the common
ones folded under "More", the spec's other problems), mixed into any state with ``TaskForm``."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.specs.forms import ParamField
from control_room.specs.tasks import ENGINES


def schema_field(field: ParamField, values: Any, errors: Any, on_change: Any, id_prefix: str) -> rx.Component:
    """One field: its label and kind, the typed input, the description, the error under it.

    ``values`` and ``errors`` are the state's dict vars (name -> text); ``on_change(name, value)``."""
    value = values[field.name].to(str)
    element_id = id_prefix + field.name
    text_props: dict[str, Any] = {"value": value, "width": "100%", "id": element_id, "placeholder": field.placeholder}
    control: rx.Component = rx.match(
        field.kind,
        ("boolean", rx.switch(checked=value == "true", on_change=lambda v: on_change(field.name, v), id=element_id)),
        ("enum", rx.select.root(
            rx.select.trigger(width="100%", id=element_id, placeholder="(default)"),
            rx.select.content(rx.foreach(field.options, lambda option: rx.select.item(option, value=option))),
            value=value, on_change=lambda v: on_change(field.name, v),
        )),
        ("text", rx.debounce_input(
            rx.text_area(**text_props, on_change=lambda v: on_change(field.name, v), rows="4", class_name="mono",
                         font_size="12px", spell_check=False),
            debounce_timeout=300,
        )),
        ("json", rx.debounce_input(
            rx.text_area(**text_props, on_change=lambda v: on_change(field.name, v), rows="2", class_name="mono",
                         font_size="12px", spell_check=False),
            debounce_timeout=300,
        )),
        rx.debounce_input(
            rx.input(**text_props, on_change=lambda v: on_change(field.name, v),
                     type=rx.cond((field.kind == "integer") | (field.kind == "number"), "number", "text")),
            debounce_timeout=300,
        ),
    )  # fmt: skip
    box: rx.Component = rx.vstack(
        rx.hstack(rx.text(field.label, size="2", weight="medium"),
                  rx.badge(field.kind, size="1", variant="surface", color_scheme="gray"), spacing="2", align="center"),
        control,
        rx.cond(field.description != "", rx.text(field.description, size="1", color_scheme="gray")),
        rx.cond(errors.contains(field.name),
                rx.text(errors[field.name].to(str), size="1", color=rx.color("red", 11),
                        id=id_prefix + "error-" + field.name, class_name="field-error")),
        spacing="1", width="100%", class_name="schema-field",
    )  # fmt: skip
    return box


def _problem(line: rx.Var[str]) -> rx.Component:
    item: rx.Component = rx.text(line, size="1", color=rx.color("red", 11), class_name="mono")
    return item


def task_form(state: Any, id_prefix: str) -> rx.Component:
    """The task form of a state mixing in ``TaskForm``: pick a task, its engine, then its fields."""
    values, errors = state.form_values, state.form_errors

    def field(f: ParamField) -> rx.Component:
        return schema_field(f, values, errors, state.set_form_value, id_prefix)

    form: rx.Component = rx.vstack(
        rx.hstack(
            rx.vstack(
                rx.text("Task", size="2", weight="medium"),
                rx.select.root(
                    rx.select.trigger(width="100%", id=id_prefix + "task"),
                    rx.select.content(rx.foreach(state.form_keys, lambda key: rx.select.item(key, value=key))),
                    value=rx.cond(state.form_keys.length() > 0, state.form_keys[state.form_task], ""),
                    on_change=state.choose_form_task,
                ),
                spacing="1", width="100%",
            ),
            rx.vstack(
                rx.text("Engine", size="2", weight="medium"),
                rx.select.root(
                    rx.select.trigger(width="120px", id=id_prefix + "engine"),
                    rx.select.content(*(rx.select.item(engine, value=engine) for engine in ENGINES)),
                    value=state.form_engine, on_change=state.set_form_engine,
                ),
                spacing="1",
            ),
            rx.tooltip(rx.icon_button(rx.icon("plus", size=14), variant="soft", on_click=state.add_form_task,
                                      id=id_prefix + "add-task", type="button"), content="Add a task"),
            rx.tooltip(rx.icon_button(rx.icon("trash-2", size=14), variant="soft", color_scheme="red",
                                      on_click=state.remove_form_task, id=id_prefix + "remove-task", type="button",
                                      disabled=state.form_keys.length() < 2), content="Remove this task"),
            width="100%", spacing="2", align="end",
        ),
        rx.cond(state.form_unreadable != "",
                rx.callout(state.form_unreadable, icon="info", color_scheme="amber", size="1", width="100%",
                           id=id_prefix + "unreadable")),
        rx.foreach(state.form_main, field),
        rx.cond(state.form_more.length() > 0, rx.accordion.root(
            rx.accordion.item(
                header=rx.text("More: dependencies, retries, routing, limits", size="2"),
                content=rx.vstack(rx.foreach(state.form_more, field), spacing="3", width="100%"),
                value="more",
            ),
            collapsible=True, type="single", variant="ghost", width="100%", id=id_prefix + "more",
        )),
        rx.cond(state.form_problems.length() > 0,
                rx.vstack(rx.foreach(state.form_problems, _problem), spacing="1", id=id_prefix + "problems",
                          width="100%")),
        spacing="3", width="100%", class_name="task-form",
    )  # fmt: skip
    return form
