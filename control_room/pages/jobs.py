"""Jobs: the project's job templates with last run, success rate, p50/p95 duration, next scheduled fire,
owner and tags; search and filters, keyset pages, live; admins create jobs in the YAML editor."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.job_dialogs import job_editor_dialog
from control_room.components.layout import layout, section_column
from control_room.components.live import live_intro, live_ticker
from control_room.components.notice import empty_note
from control_room.components.paging import pager_bar
from control_room.components.schedule_cells import schedule_cells
from control_room.components.search import search_box
from control_room.components.status import status_badge
from control_room.components.styles import ROW
from control_room.components.table_rows import body_row, number_cell, text_cell
from control_room.components.tables import data_table
from control_room.state.base import ALL, SessionState
from control_room.state.job.editor import JobEditorState
from control_room.state.jobs import LAST_STATUSES, PAGE_SIZE, JobsState
from control_room.state.rows import JobRow, ScheduleRow
from control_room.state.schedule_list import ScheduleListState


def _choice(name: str, value: rx.Var[str], all_label: str, options: Any, width: str) -> rx.Component:
    box: rx.Component = rx.select.root(
        rx.select.trigger(width=width, variant="surface", id=f"jobs-filter-{name}"),
        rx.select.content(
            rx.select.item(all_label, value=ALL),
            rx.foreach(options, lambda option: rx.select.item(option, value=option)),
        ),
        value=value,
        on_change=lambda chosen: JobsState.set_filter(name, chosen),
        size="2",
    )
    return box


def _filters() -> rx.Component:
    bar: rx.Component = rx.hstack(
        search_box(JobsState.text, JobsState.set_text, "Search name, owner, tag…", "jobs-search", "260px", size="2"),
        _choice("tag", JobsState.tag, "All tags", JobsState.tag_options, "140px"),
        _choice("owner", JobsState.owner, "All owners", JobsState.owner_options, "220px"),
        _choice("last_status", JobsState.last_status, "Any last run", list(LAST_STATUSES), "150px"),
        rx.hstack(rx.switch(checked=JobsState.archived, on_change=JobsState.set_archived, id="jobs-archived"),
                  rx.text("Archived", size="2"), **ROW),
        **ROW, width="100%", wrap="wrap",
    )  # fmt: skip
    return bar


def _row(job: JobRow) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.link(job.name, href=job.href, weight="medium", size="2", class_name="job-link"),
                rx.text(job.description, size="1", color_scheme="gray", class_name="truncate", max_width="260px",
                        title=job.description),
                spacing="0",
            )
        ),
        text_cell(job.version, size="1", color_scheme="gray"),
        rx.table.cell(rx.cond(job.last_status != "",
                              rx.vstack(status_badge(job.last_status),
                                        rx.text(job.last_run, size="1", color_scheme="gray", class_name="tabular"),
                                        spacing="1"),
                              rx.text("never run", size="1", color_scheme="gray"))),
        rx.table.cell(rx.cond(job.runs > 0,
                              rx.vstack(rx.text(job.success, size="2", class_name="tabular"),
                                        rx.text("of ", job.runs, size="1", color_scheme="gray"), spacing="0",
                                        align="end"),
                              rx.text("—", size="2", color_scheme="gray")), text_align="right"),
        rx.table.cell(rx.text(job.p50, size="2", class_name="tabular"), text_align="right", white_space="nowrap"),
        rx.table.cell(rx.text(job.p95, size="2", class_name="tabular"), text_align="right", white_space="nowrap"),
        number_cell(job.next_fire, size="1", white_space="nowrap"),
        text_cell(job.owner, size="1", class_name="truncate", max_width="180px", title=job.owner),
        rx.table.cell(rx.hstack(rx.foreach(job.tags, lambda tag: rx.badge(tag, variant="surface", size="1")),
                                spacing="1", wrap="wrap")),
        class_name="job-row",
        data_job=job.name,
    )  # fmt: skip
    return row


def _table() -> rx.Component:
    head = ("Job", "Version", "Last run", "Success (30 d)", "p50", "p95", "Next fire (UTC)", "Owner", "Tags")
    numeric = ("Success (30 d)", "p50", "p95")
    return data_table(head, rx.foreach(JobsState.rows, _row), "jobs-table", right=numeric)


def _pager() -> rx.Component:
    return pager_bar(rx.text(f"{PAGE_SIZE} per page · page ", JobsState.page, size="2", color_scheme="gray"),
                     JobsState.previous_page, JobsState.next_page, back_disabled=JobsState.page <= 1,
                     forward_disabled=~JobsState.has_next, prefix="jobs")  # fmt: skip


def _schedule_row(schedule: ScheduleRow) -> rx.Component:
    return body_row(
        text_cell(schedule.name, size="2", weight="medium"),
        rx.table.cell(rx.link(schedule.job, href=schedule.job_href, size="2", class_name="schedule-job-link")),
        *schedule_cells(schedule),
        number_cell(schedule.last_fire, size="1"),
        text_cell(schedule.policies, size="1", color_scheme="gray"),
        class_name="project-schedule-row", data_schedule=schedule.name,
    )  # fmt: skip


def _schedules() -> rx.Component:
    head = ("Schedule", "Job", "Env", "Cron", "State", "Next fire (UTC)", "Last fire (UTC)", "Policies")
    table: rx.Component = rx.vstack(
        error_callout(ScheduleListState.schedules_error),
        data_table(head, rx.foreach(ScheduleListState.schedule_rows, _schedule_row), "project-schedules"),
        rx.text("Open a job to edit, pause, enable or fire its schedules.", size="1", color_scheme="gray"),
        live_ticker(5000, lambda _now: ScheduleListState.load_schedules),
        width="100%",
    )  # fmt: skip
    return table


@layout(route=routes.JOBS, title="Jobs", on_load=[JobsState.restart, ScheduleListState.set_view("jobs")])
def jobs_page() -> rx.Component:
    """Filters, the live table and the pager; "New job" for admins."""
    return section_column(
        live_intro(rx.text("Job templates of ", rx.text.strong(SessionState.project_name), size="2",
                           color_scheme="gray"),
                   JobsState.updated_at, JobsState.is_loading,
                   rx.cond(JobsState.can_admin, rx.button(rx.icon("plus", size=16), "New job",
                                                          on_click=JobEditorState.open_new, id="new-job")),
                   spacing="4"),
        rx.segmented_control.root(
            rx.segmented_control.item("Jobs", value="jobs"),
            rx.segmented_control.item("Schedules", value="schedules"),
            value=ScheduleListState.view, on_change=ScheduleListState.set_view, id="jobs-view",
        ),
        rx.cond(ScheduleListState.view == "schedules", _schedules(), section_column(
            _filters(),
            error_callout(JobsState.error, "jobs-error", width="100%"),
            rx.cond(JobsState.loaded & (JobsState.rows.length() == 0),
                    empty_note("No job matches these filters.", padding="48px", id="jobs-empty"),
                    _table()),
            _pager(),
            live_ticker(5000, JobsState.tick),
        )),
        job_editor_dialog(),
    )  # fmt: skip
