"""The "Run" dialog of the job page: a form generated from the latest version's params schema, submitted as
a template run (operators; checked in SQL); a 422 from the service is shown under the field it names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room.services import jobs
from control_room.services.errors import Invalid, ServiceError
from control_room.specs.forms import ParamField, field_of, form_fields, initial_values, typed_params
from control_room.state import formatting
from control_room.state.base import ALL, as_user, problem_text
from control_room.state.events import background, exclusive, handler, setter
from control_room.state.job.detail import JobState


class RunFormState(JobState):
    """The run dialog: fields, their texts, and errors per field."""

    run_open: rx.Field[bool] = rx.field(False)
    fields: rx.Field[list[ParamField]] = rx.field(default_factory=list)
    values: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    field_errors: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    form_error: rx.Field[str] = rx.field("")
    run_environment: rx.Field[str] = rx.field("dev")
    is_submitting: rx.Field[bool] = rx.field(False)

    @background
    async def open_run(self) -> AsyncIterator[Any]:
        """Open the dialog with the latest version's fields and defaults."""
        async with self:
            environment = self.environment
        try:
            signed, job_id = await self.acting()
            async with as_user(signed.principal) as conn:
                schema = await jobs.version_schema(conn, template_id=job_id, version=None)
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        fields = form_fields(schema)
        async with self:
            self.fields = fields
            self.values = initial_values(fields)
            self.field_errors, self.form_error = {}, ""
            self.run_environment = environment if environment != ALL else "dev"
            self.run_open = True

    set_run_open = setter("run_open")

    @handler
    def set_value(self, name: str, value: Any) -> None:
        """A field's new text (booleans arrive as true/false)."""
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        self.values = {**self.values, name: text}
        self.field_errors = {k: v for k, v in self.field_errors.items() if k != name}

    set_run_environment = setter("run_environment")

    @background
    @exclusive("is_submitting")
    async def submit_run(self) -> AsyncIterator[Any]:
        """Run the template with the form's params; the new run shows in the job's runs."""
        async with self:
            fields, values, environment = list(self.fields), dict(self.values), self.run_environment
        try:
            signed, job_id = await self.acting()
            params = typed_params(fields, values)
            async with as_user(signed.principal) as conn:
                run, _ = await jobs.run_template(
                    conn, template_id=job_id, environment=environment, params=params, trigger="manual",
                    requested_by=signed.principal.user_id, requested_by_name=signed.principal.email,
                )  # fmt: skip
        except Exception as exc:
            named = field_of(exc.field) if isinstance(exc, ServiceError) else ""
            async with self:
                if named and isinstance(exc, Invalid):
                    self.field_errors = {named: exc.message}
                    self.form_error = ""
                else:
                    self.form_error = problem_text(exc)
            return
        async with self:
            self.run_open = False
        yield rx.toast.success(f"Run {formatting.short_id(run['id'])} submitted (v{run['template_version']})")
        yield JobState.set_tab("runs")
        yield JobState.load
