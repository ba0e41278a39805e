"""The job editor (admins): one template as YAML, checked as you type by the bundle's validators, saved as
a new immutable version (or a new job); opened empty from the Jobs page or on a job's latest version."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx

from control_room import routes
from control_room.services import job_editing, jobs, runs
from control_room.services.errors import Invalid
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, setter
from control_room.state.task_form import TaskForm


class JobEditorState(TaskForm, SessionState):
    """The YAML editor dialog."""

    editor_open: rx.Field[bool] = rx.field(False)
    yaml_text: rx.Field[str] = rx.field("")
    problems: rx.Field[list[str]] = rx.field(default_factory=list)
    save_error: rx.Field[str] = rx.field("")
    editing_name: rx.Field[str] = rx.field("")  # "" for a new job
    base_version: rx.Field[int] = rx.field(0)
    is_saving: rx.Field[bool] = rx.field(False)

    _project_slug: str = ""

    def _project(self) -> str:
        return next((p.slug for p in self.projects if p.id == self.project_id), "")

    def _check(self) -> None:
        _, found = job_editing.parse_template(self.yaml_text, project=self._project_slug)
        self.problems = [job_editing.problem_line(p) for p in found]
        self._sync_form()

    def _read_spec(self) -> dict[str, Any]:
        return job_editing.editor_spec(self.yaml_text)

    def _write_spec(self, spec: dict[str, Any]) -> None:
        self.yaml_text = job_editing.with_spec_tasks(self.yaml_text, spec)
        self.save_error = ""
        _, found = job_editing.parse_template(self.yaml_text, project=self._project_slug)
        self.problems = [job_editing.problem_line(p) for p in found]

    @handler
    def open_new(self) -> None:
        """A new job, from an example."""
        self._project_slug = self._project()
        self.editing_name, self.base_version = "", 0
        self.yaml_text = job_editing.NEW_JOB_YAML
        self.form_task = 0
        self.save_error = ""
        self._check()
        self.editor_open = True

    @signed_in_event
    async def open_edit(self, signed: SignedIn, job_id: str) -> AsyncIterator[Any]:
        """A job's latest version, to change into the next one."""
        try:
            async with as_user(signed.principal) as conn:
                template = await jobs.get_template(conn, template_id=uuid.UUID(job_id))
        except Exception as exc:
            yield rx.toast.error(problem_text(exc))
            return
        latest = template["versions"][0] if template["versions"] else None
        async with self:
            self._project_slug = template["project"]
            self.editing_name = template["name"]
            self.base_version = latest.version if latest else 0
            self.yaml_text = job_editing.template_yaml(template, latest)
            self.form_task = 0
            self.save_error = ""
            self._check()
            self.editor_open = True

    set_editor_open = setter("editor_open")

    @handler
    def set_yaml(self, text: str) -> None:
        """The edited YAML (debounced): checked again at once."""
        self.yaml_text = text
        self.save_error = ""
        self._check()

    @background
    @exclusive("is_saving")
    async def save(self) -> AsyncIterator[Any]:
        """Save (admins; checked in SQL): a changed definition becomes the next version; then open the job."""
        async with self:
            text, project, base = self.yaml_text, self._project_slug, self.base_version
            editing = self.editing_name
        signed = await self.signed_in()

        async def work() -> dict[str, Any]:
            if signed is None:
                raise Invalid("sign in first", field="session")
            parsed, _ = job_editing.parse_template(text, project=project)
            if editing and parsed is not None and parsed.name != editing:
                raise Invalid(
                    f'stays "{editing}" when editing; create a new job from the Jobs page instead', field="name"
                )
            async with as_user(signed.principal) as conn:
                project_id = await runs.resolve_project(conn, project)
                return await job_editing.save_template(
                    conn, project_id=project_id, project=project, text=text,
                    expected_version=base if editing else None, by=signed.principal.email,
                )  # fmt: skip

        saved = await self._dialog_sent(work, error="save_error", dialog="editor_open")
        if saved is None:
            return
        what = f"version {saved['version']} saved" if saved["new_version"] else "details saved (definition unchanged)"
        yield rx.toast.success(f"{saved['name']}: {what}")
        yield rx.redirect(routes.job_detail(str(saved["template_id"])))
