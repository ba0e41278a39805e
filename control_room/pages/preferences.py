"""Notification preferences (from the user menu): channels, minimum severity, quiet hours in the user's time
zone with the critical override, the daily digest for info, subscriptions to jobs and projects, muted jobs."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import section_card
from control_room.components.layout import layout
from control_room.components.tables import data_table
from control_room.state.base import SessionState
from control_room.state.preferences import SEVERITIES, PreferencesState
from control_room.state.rows import ProjectChoice

# A dataclass var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
FORM: Any = PreferencesState.form
CHANNEL_LABELS = (("email", "E-mail"), ("in_app", "In-app (the bell)"), ("webhook", "Personal webhook"))


def _card(title: str, *children: rx.Component) -> rx.Component:
    card: rx.Component = section_card(title, *children, spacing="3", width="100%")
    return card


def _text_input(name: str, placeholder: str, **props: object) -> rx.Component:
    box: rx.Component = rx.input(value=getattr(FORM, name), placeholder=placeholder,
                                 on_change=lambda value: PreferencesState.set_text(name, value),
                                 id=f"pref-{name.replace('_', '-')}", **props)  # fmt: skip
    return box


def _job(job: rx.Var[str]) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(rx.code(job, variant="ghost")),
        rx.table.cell(rx.switch(checked=FORM.subscribed_jobs.contains(job),
                                on_change=lambda on: PreferencesState.toggle("subscribed_jobs", job, on))),
        rx.table.cell(rx.switch(checked=FORM.muted_jobs.contains(job), color_scheme="red",
                                on_change=lambda on: PreferencesState.toggle("muted_jobs", job, on))),
        data_job=job,
    )  # fmt: skip
    return row


def _project(project: ProjectChoice) -> rx.Component:
    box: rx.Component = rx.checkbox(
        project.name,
        checked=FORM.subscribed_projects.contains(project.id),
        on_change=lambda on: PreferencesState.toggle("subscribed_projects", project.id, on),
    )
    return box


@layout(route=routes.PREFERENCES, title="Notification preferences", on_load=PreferencesState.load)
def preferences_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        rx.text("Your own choices in the organisation of ", rx.text.strong(PreferencesState.project_name),
                ". Nobody else can change them; admins can read them.", size="2", color_scheme="gray"),
        error_callout(PreferencesState.error, "pref-error", size="2"),
        rx.grid(
            _card("Channels",
                  *(rx.checkbox(label, checked=FORM.channels.contains(key), id=f"pref-channel-{key}",
                                on_change=lambda on, key=key: PreferencesState.toggle("channels", key, on))
                    for key, label in CHANNEL_LABELS),
                  _text_input("webhook_url", "https://hooks.example.com/me", width="100%"),
                  rx.hstack(rx.text("Minimum severity", size="2"),
                            rx.select(list(SEVERITIES), value=FORM.min_severity,
                                      on_change=lambda v: PreferencesState.set_text("min_severity", v),
                                      id="pref-min-severity"), align="center", spacing="3")),
            _card("Quiet hours",
                  rx.hstack(_text_input("quiet_start", "22:00", type="time"), rx.text("to"),
                            _text_input("quiet_end", "07:00", type="time"), align="center", spacing="2"),
                  rx.hstack(rx.text("Time zone", size="2"), _text_input("timezone", "Europe/Paris"), align="center",
                            spacing="3"),
                  rx.checkbox("Critical pages reach me during quiet hours",
                              checked=FORM.critical_overrides_quiet, id="pref-critical-override",
                              on_change=lambda on: PreferencesState.set_flag("critical_overrides_quiet", on)),
                  rx.checkbox("Info: one daily digest (09:00 my time) instead of each message",
                              checked=FORM.digest_info, id="pref-digest",
                              on_change=lambda on: PreferencesState.set_flag("digest_info", on))),
            columns="2", spacing="4", width="100%",
        ),
        _card("Display",
              rx.checkbox("Show times in UTC (else in this browser's time zone, with UTC on hover)",
                          checked=SessionState.pin_utc, on_change=SessionState.set_pin_utc, id="pref-pin-utc"),
              rx.text("Applies at once, in this browser.", size="1", color_scheme="gray")),
        _card("Projects I follow", rx.text("Every incident of these projects, beyond what routing sends me.",
                                            size="1", color_scheme="gray"),
              rx.hstack(rx.foreach(PreferencesState.projects, _project), wrap="wrap", spacing="4")),
        _card("Jobs", rx.text("Subscribe: hear about the job's incidents. Mute: never hear about it.", size="1",
                              color_scheme="gray"),
              data_table(("Job", "Subscribe", "Mute"), rx.foreach(PreferencesState.jobs, _job), "pref-jobs", plain=True,
                         size="1")),
        rx.hstack(
            rx.button("Save preferences", on_click=PreferencesState.save, loading=PreferencesState.is_saving,
                      id="pref-save"),
            rx.text(PreferencesState.saved, size="2", color_scheme="grass", id="pref-saved"),
            align="center", spacing="3",
        ),
        spacing="4", width="100%", max_width="1100px",
    )  # fmt: skip
    return content
