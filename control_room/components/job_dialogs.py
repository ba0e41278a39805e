"""Dialogs of the Jobs pages: the YAML job editor (admins), the "Run" form generated from a params schema,
the schedule editor with its fire preview (admins), and the backfill form (operators)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.components.forms import choice_select, dialog_actions, error_callout, field_label, form_dialog
from control_room.components.schema_form import schema_field, task_form
from control_room.specs.forms import ParamField
from control_room.state.base import ENVIRONMENTS
from control_room.state.job.backfills import BackfillState
from control_room.state.job.editor import JobEditorState
from control_room.state.job.run_form import RunFormState
from control_room.state.job.schedules import ScheduleState
from control_room.state.rows import NO_SCHEDULE, PreviewRow

# Dict vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
VALUES: Any = RunFormState.values
FIELD_ERRORS: Any = RunFormState.field_errors
DRAFT: Any = ScheduleState.draft
BACKFILL: Any = BackfillState.form


def _problem(line: rx.Var[str]) -> rx.Component:
    item: rx.Component = rx.text(line, size="1", color=rx.color("red", 11), class_name="mono editor-problem")
    return item


def job_editor_dialog() -> rx.Component:
    """YAML of one template, checked as you type; Save makes the next version (or a new job)."""
    return form_dialog(
        rx.dialog.title(rx.cond(JobEditorState.editing_name != "", "Edit " + JobEditorState.editing_name, "New job")),
        rx.vstack(
            rx.grid(
                rx.debounce_input(
                    rx.text_area(value=JobEditorState.yaml_text, on_change=JobEditorState.set_yaml, rows="28",
                                 class_name="mono", id="job-yaml", width="100%", font_size="12px",
                                 spell_check=False),
                    debounce_timeout=250,
                ),
                rx.box(task_form(JobEditorState, "job-form-"), id="job-form", class_name="job-form-pane"),
                columns=rx.breakpoints(initial="1", md="2"), spacing="4", width="100%",
            ),
            rx.cond(JobEditorState.problems.length() > 0,
                    rx.vstack(rx.foreach(JobEditorState.problems, _problem), spacing="1", id="job-yaml-problems"),
                    rx.text("Valid: the bundle's checks pass.", size="1", color=rx.color("grass", 11),
                            id="job-yaml-valid")),
            error_callout(JobEditorState.save_error, "job-save-error", width="100%"),
            dialog_actions("Save", JobEditorState.save, JobEditorState.is_saving, "job-save",
                           disabled=JobEditorState.problems.length() > 0),
            spacing="3", margin_top="12px", width="100%",
        ),
        is_open=JobEditorState.editor_open, on_open_change=JobEditorState.set_editor_open, max_width="1200px",
        description="One job template as the GitOps bundle writes it (without project); edit its tasks in the form "
                    "beside it or in the YAML. A changed definition is saved as a new immutable version; "
                    "`lakehouse bundle export` writes it back.",
    )  # fmt: skip


# The run form ---------------------------------------------------------------------------------------


def _param_input(field: ParamField) -> rx.Component:
    return schema_field(field, VALUES, FIELD_ERRORS, RunFormState.set_value, "param-")


def run_dialog() -> rx.Component:
    """The form of the latest version's params schema; Run submits a template run."""
    return form_dialog(
        "Run this job",
        rx.vstack(
            field_label("Environment", choice_select(RunFormState.run_environment, [(e, e) for e in ENVIRONMENTS],
                                          RunFormState.set_run_environment, "run-environment", "160px")),
            rx.cond(RunFormState.fields.length() == 0,
                    rx.text("This job takes no parameters.", size="2", color_scheme="gray")),
            rx.foreach(RunFormState.fields, _param_input),
            error_callout(RunFormState.form_error, "run-error", width="100%"),
            dialog_actions("Run", RunFormState.submit_run, RunFormState.is_submitting, "run-confirm"),
            spacing="3", margin_top="12px", width="100%",
        ),
        is_open=RunFormState.run_open, on_open_change=RunFormState.set_run_open, max_width="560px",
        description="Parameters from the latest version's params schema (* required).",
    )  # fmt: skip


# The schedule editor --------------------------------------------------------------------------------


def preview_table(rows: Any, element_id: str) -> rx.Component:
    """Upcoming fires in the schedule's zone and the viewer's."""

    def row(preview: PreviewRow) -> rx.Component:
        item: rx.Component = rx.table.row(
            rx.table.cell(rx.text(preview.schedule_zone, size="1", class_name="tabular")),
            rx.table.cell(rx.text(preview.viewer_zone, size="1", class_name="tabular")),
        )
        return item

    table: rx.Component = rx.table.root(
        rx.table.header(rx.table.row(rx.table.column_header_cell("Schedule's zone"),
                                     rx.table.column_header_cell("Your zone (" + ScheduleState.viewer_zone + ")"))),
        rx.table.body(rx.foreach(rows, row)),
        size="1", variant="surface", width="100%", id=element_id,
    )  # fmt: skip
    return table


def _draft_input(name: str, label: str, **props: Any) -> rx.Component:
    invalid = ScheduleState.draft_field == name
    box: rx.Component = field_label(
        label,
        rx.input(value=DRAFT[name].to(str), on_change=lambda v: ScheduleState.set_draft(name, v), width="100%",
                 id=f"schedule-{name.replace('_', '-')}", color_scheme=rx.cond(invalid, "red", "gray"), **props),
    )  # fmt: skip
    return box


def _draft_select(name: str, label: str, options: list[tuple[str, str]]) -> rx.Component:
    box: rx.Component = field_label(
        label, choice_select(DRAFT[name].to(str), options, lambda v: ScheduleState.set_draft(name, v),
                       f"schedule-{name.replace('_', '-')}"),
    )  # fmt: skip
    return box


def schedule_dialog() -> rx.Component:
    """Edit or create a schedule; checked as you type, with the next 10 fires."""
    policies = [("none", "none"), ("latest", "latest only"), ("all", "all (bounded)")]
    overlaps = [("allow", "allow"), ("skip", "skip while running"), ("cancel_previous", "cancel previous"),
                ("queue_one", "queue one")]  # fmt: skip
    return form_dialog(
        rx.dialog.title(rx.cond(ScheduleState.editing_id != "", "Edit schedule", "New schedule")),
        rx.grid(
            rx.vstack(
                rx.grid(_draft_input("name", "Name"),
                        _draft_select("environment", "Environment", [(e, e) for e in ENVIRONMENTS]),
                        _draft_input("cron", "Cron (5 fields or @hourly, @daily…)", class_name="mono"),
                        _draft_input("timezone", "Time zone (IANA)"),
                        _draft_select("catchup", "Catch-up after downtime", policies),
                        _draft_input("catchup_limit", "Catch-up bound", type="number"),
                        _draft_select("overlap", "When the previous run is active", overlaps),
                        _draft_input("jitter_s", "Jitter (s)", type="number"),
                        _draft_input("misfire_grace_s", "Misfire grace (s)", type="number"),
                        rx.hstack(rx.switch(checked=ScheduleState.draft_enabled,
                                            on_change=ScheduleState.set_draft_enabled, id="schedule-enabled"),
                                  rx.text("Enabled", size="2"), align="center", spacing="2", padding_top="22px"),
                        columns="2", spacing="3", width="100%"),
                field_label("Params (JSON object, checked against the params schema)",
                       rx.text_area(value=DRAFT["params"].to(str),
                                    on_change=lambda v: ScheduleState.set_draft("params", v), rows="4",
                                    class_name="mono", width="100%", id="schedule-params")),
                _draft_input("description", "Description"),
                spacing="3", width="100%",
            ),
            rx.vstack(
                rx.text("Next 10 fires", size="2", weight="medium"),
                rx.cond(ScheduleState.preview.length() > 0,
                        preview_table(ScheduleState.preview, "schedule-preview"),
                        rx.text("No fire: fix the cron or time zone.", size="1", color_scheme="gray")),
                spacing="2", width="100%",
            ),
            columns="3fr 2fr", spacing="4", width="100%", margin_top="8px",
        ),
        rx.vstack(
            rx.cond(ScheduleState.draft_error != "",
                    rx.callout(ScheduleState.draft_field + ": " + ScheduleState.draft_error, icon="triangle-alert",
                               color_scheme="red", size="1", width="100%", id="schedule-error"),
                    rx.text("Valid.", size="1", color=rx.color("grass", 11), id="schedule-valid")),
            dialog_actions("Save schedule", ScheduleState.save, ScheduleState.is_saving, "schedule-save",
                     disabled=ScheduleState.draft_error != ""),
            spacing="3", width="100%", margin_top="12px",
        ),
        is_open=ScheduleState.editor_open, on_open_change=ScheduleState.set_editor_open, max_width="1020px",
    )  # fmt: skip


# The backfill form ----------------------------------------------------------------------------------


def _bf_input(name: str, label: str, **props: Any) -> rx.Component:
    box: rx.Component = field_label(
        label, rx.input(value=getattr(BACKFILL, name), on_change=lambda v: BackfillState.set_field(name, v),
                        width="100%", id=f"bf-{name}", **props),
    )  # fmt: skip
    return box


def _bf_select(name: str, label: str, options: list[tuple[str, str]]) -> rx.Component:
    box: rx.Component = field_label(
        label, choice_select(getattr(BACKFILL, name), options, lambda v: BackfillState.set_field(name, v),
                             f"bf-{name}"),
    )  # fmt: skip
    return box


def backfill_dialog(schedule_options: Any) -> rx.Component:
    """A date range and a step (or a schedule's cron), concurrency and order: one run per interval."""
    return form_dialog(
        "Backfill",
        rx.grid(
            _bf_input("start", "From", placeholder="2026-11-01"),
            _bf_input("end", "To", placeholder="2026-11-06"),
            _bf_input("step", "Step (15m, 6h, 1d, 1w or a cron)"),
            field_label("Or the cron of a schedule", rx.select.root(
                rx.select.trigger(width="100%", id="bf-schedule"),
                rx.select.content(rx.select.item("no schedule", value=NO_SCHEDULE),
                                  rx.foreach(schedule_options,
                                             lambda s: rx.select.item(s.name + " (" + s.cron + ")", value=s.id))),
                value=BACKFILL.schedule, on_change=lambda v: BackfillState.set_field("schedule", v),
            )),
            _bf_input("concurrency", "Runs at a time", type="number"),
            _bf_select("order", "Order", [("oldest_first", "oldest first"), ("newest_first", "newest first")]),
            _bf_select("environment", "Environment", [(e, e) for e in ENVIRONMENTS]),
            columns="2", spacing="3", width="100%", margin_top="12px",
        ),
        field_label("Params of every run (JSON object; a schedule's params are the base)",
               rx.text_area(value=BACKFILL.params, rows="3", class_name="mono", width="100%",
                            on_change=lambda v: BackfillState.set_field("params", v), id="bf-params")),
        rx.vstack(
            error_callout(BackfillState.bf_error, "bf-error", width="100%"),
            dialog_actions("Start backfill", BackfillState.create, BackfillState.is_creating, "bf-confirm"),
            spacing="3", width="100%", margin_top="12px",
        ),
        is_open=BackfillState.backfill_open, on_open_change=BackfillState.set_backfill_open, max_width="620px",
        description="One run per interval of the range, with logical_date, data_interval_start and "
                "data_interval_end as params. Times are UTC.",
    )  # fmt: skip
