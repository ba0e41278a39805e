"""A job template's page: header and actions by role (Run, Backfill, Edit, Archive/Restore), the current
version's DAG and params schema, runs with history charts, versions with a side-by-side diff, schedules
with their past fires and next ones, and backfills with progress."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import dialog_actions, error_callout, field_label, form_dialog
from control_room.components.headings import titled_card
from control_room.components.job_dialogs import (
    backfill_dialog,
    job_editor_dialog,
    preview_table,
    run_dialog,
    schedule_dialog,
)
from control_room.components.layout import counted_label, layout, page_tabs, section_column
from control_room.components.live import live_ticker, updated_label
from control_room.components.schedule_cells import schedule_cells
from control_room.components.styles import ROW
from control_room.components.table_rows import body_row, number_cell, status_cell, text_cell
from control_room.components.tables import data_table, opener_cell
from control_room.state.job.backfills import BackfillState
from control_room.state.job.detail import JobState
from control_room.state.job.editor import JobEditorState
from control_room.state.job.history import JobHistoryState
from control_room.state.job.promotion import JobPromotionState
from control_room.state.job.run_form import RunFormState
from control_room.state.job.schedules import ScheduleState
from control_room.state.job.versions import VersionDiffState
from control_room.state.rows import BackfillRow, DiffLine, FireRow, RunRow, ScheduleRow, StageCell, VersionRow

HEADER: Any = JobState.header
PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
DIFF_COLORS = {"replace": "amber", "delete": "red", "insert": "grass"}


def _header() -> rx.Component:
    header: rx.Component = rx.hstack(
        rx.vstack(
            rx.hstack(rx.heading(HEADER.name, size="6", id="job-name"),
                      rx.badge("v", HEADER.latest_version, variant="surface", size="2", id="job-version"),
                      rx.cond(HEADER.archived,
                              rx.badge("archived", color_scheme="orange", size="2", id="job-archived")),
                      spacing="3", align="center"),
            rx.text(HEADER.description, size="2", color_scheme="gray"),
            rx.hstack(rx.text("Owner ", rx.text.strong(HEADER.owner), size="1", color_scheme="gray"),
                      rx.foreach(HEADER.tags, lambda tag: rx.badge(tag, variant="surface", size="1")),
                      rx.link("All runs of this job →", href=HEADER.runs_href, size="1", id="job-runs-link"),
                      **ROW),
            spacing="1",
        ),
        rx.spacer(),
        rx.hstack(
            rx.cond(JobState.can_operate_job, rx.hstack(
                rx.button(rx.icon("play", size=14), "Run", on_click=RunFormState.open_run, id="job-run"),
                rx.button(rx.icon("history", size=14), "Backfill", variant="soft", on_click=BackfillState.open_backfill,
                          id="job-backfill"),
                spacing="2")),
            rx.cond(JobState.can_admin_job, rx.hstack(
                rx.cond(~HEADER.archived, rx.button(rx.icon("pencil", size=14), "Edit", variant="soft",
                                                    on_click=JobEditorState.open_edit(HEADER.id), id="job-edit")),
                rx.cond(HEADER.archived,
                        rx.button("Restore", variant="soft", color_scheme="grass",
                                  on_click=JobState.set_archived(False), id="job-restore"),
                        rx.button("Archive", variant="soft", color_scheme="orange",
                                  on_click=JobState.set_archived(True), id="job-archive")),
                spacing="2")),
            spacing="2",
        ),
        width="100%", align="start",
    )  # fmt: skip
    return header


def _run_row(run: RunRow) -> rx.Component:
    return body_row(
        status_cell(run.status),
        rx.table.cell(rx.link(run.short_id, href=run.href, class_name="mono job-run-link")),
        rx.table.cell(rx.badge(run.environment, variant="outline", color_scheme="gray")),
        text_cell(run.trigger, size="1", color_scheme="gray"),
        number_cell(run.tasks, size="1"),
        number_cell(run.created, size="1"),
        number_cell(run.duration, size="1"),
        text_cell(run.requested_by, size="1", color_scheme="gray"),
        class_name="job-run-row", data_status=run.status,
    )  # fmt: skip


def _runs_table() -> rx.Component:
    return data_table(("Status", "Run", "Env", "Trigger", "Tasks", "Created (UTC)", "Duration", "By"),
                  rx.foreach(JobState.recent_runs, _run_row), "job-runs")  # fmt: skip


def _stage(cell: StageCell) -> rx.Component:
    stage: rx.Component = rx.vstack(
        rx.hstack(rx.text(cell.environment, size="1", color_scheme="gray", weight="medium"),
                  rx.cond(cell.gate != "", rx.icon("shield-check", size=12, color=rx.color("indigo", 9))),
                  spacing="1", align="center"),
        rx.text(cell.version, size="4", weight="bold", class_name="tabular"),
        rx.cond(cell.request_id != "", rx.link(rx.badge(cell.ticks, " ", cell.request_label, size="1",
                                                        color_scheme=cell.request_tone, variant="surface"),
                                               href="/promotions/" + cell.request_id)),
        spacing="1", min_width="160px", class_name="job-stage", id="job-stage-" + cell.environment,
    )  # fmt: skip
    return stage


def _promotion_card() -> rx.Component:
    return titled_card(
        "Environments (a shield: a promotion gate decides what runs there)",
        rx.hstack(
            rx.foreach(JobPromotionState.stages, _stage),
            rx.spacer(),
            rx.cond(JobState.can_operate_job, rx.button(rx.icon("git-pull-request", size=14), "Request promotion",
                                                        variant="soft", on_click=JobPromotionState.open_dialog,
                                                        id="job-request-promotion")),
            width="100%", align="center", spacing="6",
        ),
        live_ticker(3000, JobPromotionState.tick),
        grid_column="1 / -1", element_id="job-environments",
    )  # fmt: skip


def _promotion_dialog() -> rx.Component:
    return form_dialog(
        "Request promotion",
        rx.vstack(
            field_label("Version", rx.select(JobPromotionState.versions, value=JobPromotionState.version,
                                             on_change=JobPromotionState.set_version, id="promotion-version")),
            field_label("Into", rx.select(["staging", "prod"], value=JobPromotionState.target,
                                          on_change=JobPromotionState.set_target, id="promotion-target")),
            rx.text_area(placeholder="What changed and why it is ready", value=JobPromotionState.comment,
                         on_change=JobPromotionState.set_comment, width="100%", id="promotion-comment"),
            error_callout(JobPromotionState.error, "promotion-request-error"),
            dialog_actions("Request", JobPromotionState.submit, False, "promotion-submit"),
            spacing="2", width="100%",
        ),
        is_open=JobPromotionState.dialog_open, on_open_change=JobPromotionState.set_dialog_open, max_width="480px",
    )  # fmt: skip


def _overview() -> rx.Component:
    panel: rx.Component = rx.grid(
        _promotion_card(),
        titled_card("Task graph of the current version",
              rx.plotly.basic(data=JobState.dag, config=PLOT_CONFIG, width="100%", id="job-dag")),
        titled_card("Params schema", rx.code_block(JobState.params_schema, language="json", font_size="12px",
                                             width="100%", id="job-params-schema")),
        titled_card("Latest runs", _runs_table(), grid_column="1 / -1"),
        columns="3fr 2fr", spacing="4", width="100%", align="start",
    )  # fmt: skip
    return panel


def _history() -> rx.Component:
    return section_column(
        rx.text(JobHistoryState.history_summary, size="2", color_scheme="gray", id="history-summary"),
        rx.cond(JobHistoryState.has_history, rx.grid(
            titled_card("Duration per run (coloured by outcome, dashed: p95)",
                  rx.plotly.basic(data=JobHistoryState.durations, config=PLOT_CONFIG, width="100%",
                                  id="history-durations"), grid_column="1 / -1"),
            titled_card("Success rate per day (UTC)",
                  rx.plotly.basic(data=JobHistoryState.success, config=PLOT_CONFIG, width="100%",
                                  id="history-success")),
            titled_card("Duration per task",
                  rx.plotly.basic(data=JobHistoryState.task_trend, config=PLOT_CONFIG, width="100%",
                                  id="history-tasks")),
            columns="2", spacing="4", width="100%",
        )),
        titled_card("Runs of this job", _runs_table()),
        live_ticker(5000, JobHistoryState.load_history),
    )  # fmt: skip


def _version_row(version: VersionRow) -> rx.Component:
    return body_row(
        rx.table.cell(rx.badge(version.label, variant="surface")),
        number_cell(version.created, size="1"),
        text_cell(version.created_by, size="1"),
        text_cell(version.tasks, size="1"),
        rx.table.cell(rx.code(version.sha, variant="ghost", size="1")),
        class_name="job-version-row",
    )


def _version_pick(side: str, value: rx.Var[str]) -> rx.Component:
    pick: rx.Component = rx.select.root(
        rx.select.trigger(width="100px", id=f"diff-{side}"),
        rx.select.content(rx.foreach(JobState.versions,
                                     lambda v: rx.select.item(v.label, value=v.number))),
        value=value, on_change=lambda chosen: VersionDiffState.compare(side, chosen),
    )  # fmt: skip
    return pick


def _diff_line(line: DiffLine) -> rx.Component:
    tone = rx.Var.create(DIFF_COLORS).to(dict)[line.kind].to(str)
    shade = rx.cond(line.kind == "equal", "transparent", rx.color(tone, 3))
    row: rx.Component = rx.table.row(
        rx.table.cell(rx.text(line.left_no, size="1", color_scheme="gray"), width="40px"),
        rx.table.cell(rx.text(line.left, size="1", class_name="mono", white_space="pre-wrap", word_break="break-all"),
                      background=rx.cond(line.kind == "insert", "transparent", shade)),
        rx.table.cell(rx.text(line.right_no, size="1", color_scheme="gray"), width="40px"),
        rx.table.cell(rx.text(line.right, size="1", class_name="mono", white_space="pre-wrap", word_break="break-all"),
                      background=rx.cond(line.kind == "delete", "transparent", shade)),
        class_name="diff-line", data_kind=line.kind,
    )  # fmt: skip
    return row


def _versions() -> rx.Component:
    return section_column(
        titled_card("Versions (immutable; a changed definition is the next version)",
              data_table(("Version", "Created (UTC)", "By", "Tasks", "Content SHA-256"),
                         rx.foreach(JobState.versions, _version_row), "job-versions")),
        titled_card("Compare",
              rx.hstack(_version_pick("left", VersionDiffState.left_version), rx.icon("arrow-right", size=14),
                        _version_pick("right", VersionDiffState.right_version),
                        rx.text(VersionDiffState.diff_summary, size="2", color_scheme="gray", id="diff-summary"),
                        spacing="3", align="center"),
              rx.table.root(rx.table.body(rx.foreach(VersionDiffState.diff, _diff_line)), size="1", width="100%",
                            id="version-diff", table_layout="fixed"),
              element_id="version-compare"),
    )  # fmt: skip


def _schedule_row(schedule: ScheduleRow) -> rx.Component:
    row: rx.Component = rx.table.row(
        opener_cell(schedule.name, ScheduleState.select(schedule.id), "schedule-link"),
        *schedule_cells(schedule),
        text_cell(schedule.policies, size="1", color_scheme="gray"),
        rx.table.cell(rx.hstack(
            rx.cond(JobState.can_operate_job, rx.hstack(
                rx.button("Fire now", size="1", variant="soft", on_click=ScheduleState.fire_now(schedule.id),
                          class_name="schedule-fire"),
                rx.cond(schedule.enabled, rx.button(
                    rx.cond(schedule.paused, "Resume", "Pause"), size="1", variant="soft", color_scheme="gray",
                    on_click=ScheduleState.switch(schedule.id, "paused", ~schedule.paused))),
                spacing="1")),
            rx.cond(JobState.can_admin_job, rx.hstack(
                rx.button("Edit", size="1", variant="soft", color_scheme="gray",
                          on_click=ScheduleState.open_editor(schedule.id), class_name="schedule-edit"),
                rx.button(rx.cond(schedule.enabled, "Disable", "Enable"), size="1", variant="soft",
                          color_scheme=rx.cond(schedule.enabled, "orange", "grass"),
                          on_click=ScheduleState.switch(schedule.id, "enabled", ~schedule.enabled)),
                spacing="1")),
            spacing="1")),
        class_name="schedule-row", data_schedule=schedule.name,
    )  # fmt: skip
    return row


def _fire_row(fire: FireRow) -> rx.Component:
    return body_row(
        number_cell(fire.fire_time, size="1"),
        rx.table.cell(rx.badge(fire.outcome, variant="soft", size="1")),
        text_cell(fire.trigger, size="1", color_scheme="gray"),
        rx.table.cell(rx.cond(fire.run_href != "", rx.link("run", href=fire.run_href, size="1"))),
        text_cell(fire.reason, size="1", color_scheme="gray"),
        class_name="fire-row", data_outcome=fire.outcome,
    )  # fmt: skip


def _schedules() -> rx.Component:
    return section_column(
        rx.hstack(rx.spacer(), rx.cond(JobState.can_admin_job & ~HEADER.archived,
                                       rx.button(rx.icon("plus", size=14), "New schedule", size="2",
                                                 on_click=ScheduleState.open_editor(""), id="schedule-new")),
                  width="100%"),
        data_table(("Schedule", "Env", "Cron", "State", "Next fire (UTC)", "Policies", ""),
                   rx.foreach(JobState.schedules, _schedule_row), "job-schedules"),
        rx.cond(ScheduleState.selected_schedule != "", rx.grid(
            titled_card("Past fires of " + ScheduleState.selected_name + " (coloured by outcome)",
                  rx.cond(ScheduleState.fires.length() > 0,
                          rx.plotly.basic(data=ScheduleState.fire_strip, config=PLOT_CONFIG, width="100%",
                                          id="fire-strip"),
                          rx.text("No fire yet.", size="1", color_scheme="gray")),
                  data_table(("Fire time (UTC)", "Outcome", "Trigger", "", "Reason"),
                             rx.foreach(ScheduleState.fires, _fire_row), "schedule-fires")),
            titled_card("Next 10 fires", preview_table(ScheduleState.selected_preview, "selected-preview")),
            columns="3fr 2fr", spacing="4", width="100%",
        )),
    )  # fmt: skip


def _backfill_row(backfill: BackfillRow) -> rx.Component:
    return body_row(
        status_cell(backfill.status),
        number_cell(backfill.span, size="1"),
        text_cell(backfill.step, " · ", backfill.order, " · ", backfill.concurrency, " at a time", size="1"),
        rx.table.cell(rx.vstack(rx.progress(value=backfill.percent, width="160px"),
                                rx.text(backfill.done, " / ", backfill.total, " done · ", backfill.summary, size="1",
                                        color_scheme="gray", class_name="backfill-progress"), spacing="1")),
        number_cell(backfill.created, size="1"),
        rx.table.cell(rx.cond(JobState.can_operate_job & (backfill.status == "running"),
                              rx.button("Cancel", size="1", variant="soft", color_scheme="red",
                                        on_click=BackfillState.cancel(backfill.id), class_name="backfill-cancel"))),
        class_name="backfill-row", data_status=backfill.status,
    )  # fmt: skip


def _backfills() -> rx.Component:
    return section_column(
        data_table(("Status", "Range (UTC)", "Step", "Progress", "Created (UTC)", ""),
                   rx.foreach(BackfillState.backfill_rows, _backfill_row), "job-backfills"),
        live_ticker(3000, BackfillState.load_backfills),
    )  # fmt: skip


def _body() -> rx.Component:
    return section_column(
        rx.hstack(
            rx.link(rx.hstack(rx.icon("arrow-left", size=14), rx.text("Jobs", size="2"), spacing="1", align="center"),
                    href=routes.JOBS, color_scheme="gray"),
            rx.spacer(), updated_label(JobState.updated_at, JobState.is_acting), width="100%",
        ),
        _header(),
        error_callout(JobState.error, "job-error", width="100%"),
        page_tabs(
            (
                ("Overview", "overview", _overview()),
                ("Runs & history", "runs", _history()),
                ("Versions", "versions", _versions()),
                (counted_label("Schedules", JobState.schedules.length()), "schedules", _schedules()),
                ("Backfills", "backfills", _backfills()),
            ),
            JobState.tab, JobState.set_tab,
        ),
        live_ticker(3000, JobState.tick),
        run_dialog(), schedule_dialog(), backfill_dialog(JobState.schedules), job_editor_dialog(), _promotion_dialog(),
    )  # fmt: skip


VIEWER_ZONE = "Intl.DateTimeFormat().resolvedOptions().timeZone"


@layout(
    route=routes.JOB_DETAIL,
    title="Job",
    on_load=[JobState.load, JobHistoryState.load_history(""), VersionDiffState.compare("", ""), JobPromotionState.load,
             BackfillState.load_backfills(""), rx.call_script(VIEWER_ZONE, callback=ScheduleState.set_viewer_zone)],
)  # fmt: skip
def job_detail_page() -> rx.Component:
    """The job, or why it cannot be shown."""
    page: rx.Component = rx.cond(
        JobState.not_found != "",
        rx.center(rx.vstack(rx.icon("search-x", size=32, color=rx.color("gray", 9)),
                            rx.text(JobState.not_found, size="3", id="job-not-found"),
                            rx.link("Back to jobs", href=routes.JOBS), align="center"), padding="64px"),
        rx.cond(
            JobState.loaded, _body(),
            # A load that failed says why (and the reload link) instead of spinning forever.
            rx.cond(JobState.error != "",
                    rx.center(rx.callout(JobState.error, icon="triangle-alert", color_scheme="red",
                                         id="job-load-error"), padding="64px"),
                    rx.center(rx.spinner(size="3"), padding="64px")),
        ),
    )  # fmt: skip
    return page
