"""The task form, as a mixin: the Submit dialog and the job editor show the tasks of a spec as a form
generated from each engine's schema, beside the text (JSON or YAML) it stays in step with.

The text is the truth: each form edit rewrites it, each text edit re-reads the form. Problems are
the API's own validation of the whole spec (``control_room.specs.task_forms.spec_problems``): those of
the shown task appear under their fields, the others in a list, all before anything is submitted.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.specs.forms import ParamField
from control_room.specs.task_forms import (
    engine_fields,
    new_task,
    set_field,
    spec_problems,
    switch_engine,
    task_values,
)
from control_room.specs.tasks import ENGINES
from control_room.state.events import handler


class TaskForm(rx.State, mixin=True):
    """Mix into a state holding a spec as text; implement ``_read_spec`` and ``_write_spec``."""

    form_task: rx.Field[int] = rx.field(0)
    form_keys: rx.Field[list[str]] = rx.field(default_factory=list)
    form_engine: rx.Field[str] = rx.field("")
    form_main: rx.Field[list[ParamField]] = rx.field(default_factory=list)
    form_more: rx.Field[list[ParamField]] = rx.field(default_factory=list)
    form_values: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    form_errors: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    form_problems: rx.Field[list[str]] = rx.field(default_factory=list)
    form_unreadable: rx.Field[str] = rx.field("")  # why the text cannot be read as a spec ("" when it can)

    def _read_spec(self) -> dict[str, Any]:
        """The spec the text holds; ValueError saying why it cannot be read."""
        raise NotImplementedError

    def _write_spec(self, spec: dict[str, Any]) -> None:
        """Store the spec back as text."""
        raise NotImplementedError

    def _spec_and_tasks(self) -> tuple[dict[str, Any], list[Any]] | None:
        try:
            spec = self._read_spec()
        except ValueError as exc:
            self.form_unreadable = str(exc)
            return None
        tasks = spec.get("tasks")
        if not isinstance(tasks, list):
            tasks = spec["tasks"] = []
        self.form_unreadable = ""
        return spec, tasks

    def _sync_form(self, field_error: tuple[str, str] | None = None) -> None:
        """Read the form (fields, texts, problems) again from the text."""
        found = self._spec_and_tasks()
        if found is None:
            return
        spec, tasks = found
        self.form_keys = [str(t.get("key", f"#{i + 1}")) if isinstance(t, dict) else f"#{i + 1}" for i, t in
                          enumerate(tasks)]  # fmt: skip
        self.form_task = min(max(self.form_task, 0), max(len(tasks) - 1, 0))
        task = tasks[self.form_task] if tasks and isinstance(tasks[self.form_task], dict) else {}
        self.form_engine = str(task.get("engine", ""))
        main, more = engine_fields(self.form_engine)
        self.form_main, self.form_more = main, more
        self.form_values = task_values(task, main + more)
        prefix = f"/tasks/{self.form_task}/"
        errors, others = {}, []
        for pointer, message in spec_problems(spec).items():
            name = pointer.removeprefix(prefix).split("/", 1)[0] if pointer.startswith(prefix) else ""
            if name in self.form_values:
                errors[name] = message
            else:
                others.append(f"{pointer or '/'}: {message}")
        if field_error is not None:
            errors[field_error[0]] = field_error[1]
        self.form_errors, self.form_problems = errors, others

    def _edit_task(self, change: Any) -> None:
        found = self._spec_and_tasks()
        if found is None:
            return
        spec, tasks = found
        if not tasks:
            tasks.append(new_task(tasks))
        task = tasks[self.form_task] if isinstance(tasks[self.form_task], dict) else {}
        tasks[self.form_task] = change(task)
        self._write_spec(spec)

    @handler
    def set_form_value(self, name: str, value: Any) -> None:
        """A field's new text (switches send true/false): set in the task, or its error shown."""
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        field = next((f for f in self.form_main + self.form_more if f.name == name), None)
        if field is None:
            return
        try:
            self._edit_task(lambda task: set_field(task, field, text))
        except ValueError as exc:
            self.form_values = {**self.form_values, name: text}
            self.form_errors = {**self.form_errors, name: str(exc)}
            return
        self._sync_form()

    @handler
    def set_form_engine(self, engine: str) -> None:
        """Run the shown task on another engine (its key, dependencies and routing are kept)."""
        if engine in ENGINES:
            self._edit_task(lambda task: switch_engine(task, engine))
            self._sync_form()

    @handler
    def choose_form_task(self, key: str) -> None:
        """Show another task of the spec in the form."""
        if key in self.form_keys:
            self.form_task = self.form_keys.index(key)
            self._sync_form()

    @handler
    def add_form_task(self) -> None:
        """Append a shell task depending on the last one, and show it."""
        found = self._spec_and_tasks()
        if found is None:
            return
        spec, tasks = found
        tasks.append(new_task(tasks))
        self._write_spec(spec)
        self.form_task = len(tasks) - 1
        self._sync_form()

    @handler
    def remove_form_task(self) -> None:
        """Remove the shown task (the dependencies naming it stay, and the problems say so)."""
        found = self._spec_and_tasks()
        if found is None or not found[1]:
            return
        spec, tasks = found
        del tasks[self.form_task]
        self._write_spec(spec)
        self._sync_form()
