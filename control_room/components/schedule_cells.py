"""The cells a schedule shows alike in the project's schedules list (Jobs page) and in a job's schedules tab."""

from __future__ import annotations

import reflex as rx

from control_room.state.rows import ScheduleRow


def schedule_cells(schedule: ScheduleRow) -> tuple[rx.Component, ...]:
    """Environment, cron in its time zone, state (enabled, paused or disabled) and next fire."""
    state_tone = rx.match(schedule.state, ("enabled", "grass"), ("paused", "amber"), "gray")
    return (
        rx.table.cell(rx.badge(schedule.environment, variant="outline", color_scheme="gray")),
        rx.table.cell(rx.code(schedule.cron, variant="ghost"),
                      rx.text(" ", schedule.timezone, size="1", color_scheme="gray")),
        rx.table.cell(rx.badge(schedule.state, color_scheme=state_tone, variant="soft")),
        rx.table.cell(rx.text(schedule.next_fire, size="1", class_name="tabular")),
    )  # fmt: skip
