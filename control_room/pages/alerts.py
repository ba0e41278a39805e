"""Alerts: incidents (open, acked, resolved; keyset pages; filters) with each one's timeline of messages sent
and acks, ack/snooze/resolve for operators; the org's rules with last fired time and incident counts, and
the rule editor for admins with its 'test against the last 7 days' preview."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.bell import severity_badge
from control_room.components.forms import dialog_actions, error_callout, form_dialog
from control_room.components.layout import layout
from control_room.components.live import live_ticker
from control_room.components.paging import keyset_pager
from control_room.components.search import text_search
from control_room.components.stacked_text import fact, name_over_detail
from control_room.components.table_rows import body_row, number_cell, text_cell
from control_room.components.tables import data_table
from control_room.state.alerts.incident import SNOOZE_CHOICES, IncidentState
from control_room.state.alerts.incidents import REFRESH_MS, IncidentsState
from control_room.state.alerts.rule_editor import KINDS, RuleEditorState
from control_room.state.alerts.rules import RulesState
from control_room.state.base import ALL, ENVIRONMENTS, SessionState
from control_room.state.rows import AlertRuleRow, IncidentRow, ProjectChoice, TimelineRow

STATE_COLORS = {"open": "red", "acked": "blue", "resolved": "grass"}
# Dict and dataclass vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
FORM: Any = RuleEditorState.form
INCIDENT: Any = IncidentState.incident


def state_badge(state: rx.Var[str] | str) -> rx.Component:
    value = rx.Var.create(state).to(str)
    color = rx.Var.create(STATE_COLORS).to(dict)[value].to(str)
    badge: rx.Component = rx.badge(value, color_scheme=color, variant="surface", size="1", class_name="status-badge")
    return badge


def _select(name: str, choices: list[tuple[str, str]] | tuple[tuple[str, str], ...], **props: Any) -> rx.Component:
    """A select of the editor bound to one form field."""
    box: rx.Component = rx.select.root(
        rx.select.trigger(width="100%", id=f"rule-{name.replace('_', '-')}"),
        rx.select.content(*(rx.select.item(label, value=value) for value, label in choices)),
        value=FORM[name], on_change=lambda value: RuleEditorState.set_field(name, value), **props,
    )  # fmt: skip
    return box


def _field(label: str, control: rx.Component, hint: str = "") -> rx.Component:
    box: rx.Component = rx.vstack(
        rx.text(label, size="1", weight="medium"), control,
        rx.cond(hint != "", rx.text(hint, size="1", color_scheme="gray")), spacing="1", width="100%",
    )  # fmt: skip
    return box


def _input(name: str, label: str, hint: str = "", placeholder: str = "") -> rx.Component:
    control = rx.input(value=FORM[name], on_change=lambda value: RuleEditorState.set_field(name, value),
                       placeholder=placeholder, id=f"rule-{name.replace('_', '-')}", width="100%")  # fmt: skip
    return _field(label, control, hint)


def _kind_setting(name: str, component: rx.Component) -> rx.Component:
    shown: rx.Component = rx.cond(RuleEditorState.shown.contains(name), component)
    return shown


def _project_item(project: ProjectChoice) -> rx.Component:
    item: rx.Component = rx.select.item(project.name, value=project.id)
    return item


def _editor() -> rx.Component:
    settings = rx.grid(
        _kind_setting("threshold", _input("threshold", "Threshold (s)", "seconds: duration, wait, heartbeat age, age")),
        _kind_setting("factor", _input("factor", "Factor x p95", "fire over this many times the job's p95")),
        _kind_setting("baseline_runs", _input("baseline_runs", "Baseline runs", "p95 of the last N succeeded runs")),
        _kind_setting("window_s", _input("window_s", "Window (s)")),
        _kind_setting("match_pool", _input("match_pool", "Pool", "empty: every pool")),
        _kind_setting("cap_percent", _input("cap_percent", "Cap usage %", "empty: refusals only")),
        _kind_setting("sla_time", _input("sla_time", "Succeeded by (local time)", placeholder="06:30")),
        _kind_setting("sla_timezone", _input("sla_timezone", "Time zone", placeholder="Europe/Paris")),
        _kind_setting("dataset_name", _input("dataset_name", "Dataset", placeholder="analytics.orders")),
        _kind_setting("event_type", _input("event_type", "Event type", placeholder="quality.check")),
        _kind_setting("event_level", _field("Minimum level", _select(
            "event_level", [(ALL, "any"), ("debug", "debug"), ("info", "info"), ("warning", "warning"),
                            ("error", "error")]))),
        _kind_setting("event_attributes", _input("event_attributes", "Event data contains (JSON)")),
        columns="3", spacing="3", width="100%",
    )  # fmt: skip
    preview = rx.vstack(
        rx.hstack(
            rx.button(rx.icon("history", size=14), "Test against the last 7 days", variant="soft",
                      on_click=RuleEditorState.preview, id="rule-preview"),
            rx.text(RuleEditorState.preview_text, size="2", id="rule-preview-result"),
            spacing="3", align="center",
        ),
        rx.cond(RuleEditorState.preview_note != "", rx.text(RuleEditorState.preview_note, size="1",
                                                            color_scheme="amber")),
        rx.hstack(
            rx.foreach(RuleEditorState.preview_days, lambda d: rx.badge(d[0], ": ", d[1], variant="outline")),
            rx.foreach(RuleEditorState.preview_subjects, lambda s: rx.badge(s[0], " x", s[1], color_scheme="gray")),
            wrap="wrap", spacing="1",
        ),
        spacing="2", width="100%", padding="12px", border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="var(--radius-3)",
    )  # fmt: skip
    dialog: rx.Component = form_dialog(
        rx.dialog.title(rx.cond(RuleEditorState.rule_id != "", "Edit rule", "New alert rule")),
        rx.vstack(
            rx.grid(
                _input("name", "Name", "lowercase, digits, - and _", placeholder="orders-failed"),
                _field("Kind", _select("kind", [(k, k.replace("_", " ")) for k in KINDS])),
                _field("Severity", _select("severity", [("info", "info"), ("warning", "warning"),
                                                        ("critical", "critical")])),
                _field("Scope", rx.select.root(
                    rx.select.trigger(width="100%", id="rule-scope"),
                    rx.select.content(rx.select.item("Whole org", value="org"),
                                      rx.foreach(SessionState.projects, _project_item)),
                    value=FORM["scope"], on_change=lambda value: RuleEditorState.set_field("scope", value))),
                _field("Environment", _select("environment", [(ALL, "every environment"),
                                                              *((e, e) for e in ENVIRONMENTS)])),
                _input("notify", "Notify", "e-mail, slack:<channel>, webhook:<channel>; members' bells always"),
                columns="3", spacing="3", width="100%",
            ),
            settings,
            rx.hstack(
                rx.checkbox("Escalate along the routing owners", checked=RuleEditorState.escalate,
                            on_change=RuleEditorState.set_escalate, id="rule-escalate"),
                rx.cond(RuleEditorState.escalate, rx.box(_input("escalate_after_s", "after (s)"), width="140px")),
                rx.checkbox("Enabled", checked=RuleEditorState.enabled, on_change=RuleEditorState.set_enabled,
                            id="rule-enabled"),
                spacing="4", align="end",
            ),
            _input("description", "Description"),
            preview,
            error_callout(RuleEditorState.error, "rule-error"),
            dialog_actions("Save rule", RuleEditorState.save, RuleEditorState.is_saving, "rule-save"),
            spacing="4", width="100%",
        ),
        is_open=RuleEditorState.is_open, on_open_change=RuleEditorState.set_open,
        max_width="860px", width="92vw", id="rule-editor",
    )  # fmt: skip
    return dialog


def _rule(rule: AlertRuleRow) -> rx.Component:
    row: rx.Component = body_row(
        rx.table.cell(rx.vstack(rx.text(rule.name, weight="medium"), rx.text(rule.kind.replace("_", " "), size="1",
                                                                             color_scheme="gray"), spacing="0")),
        text_cell(rule.scope, size="2"),
        text_cell(rule.condition, size="1"),
        rx.table.cell(severity_badge(rule.severity)),
        text_cell(rule.notify, size="1", class_name="truncate", max_width="220px"),
        number_cell(rule.last_fired, size="1"),
        number_cell(rule.open_incidents, " / ", rule.incidents),
        rx.table.cell(rx.cond(
            rule.editable,
            rx.hstack(
                rx.switch(checked=rule.enabled, on_change=lambda on: RulesState.set_enabled(rule.id, on), size="1"),
                rx.button("Edit", size="1", variant="soft", on_click=RuleEditorState.open_edit(rule.id)),
                spacing="2", align="center",
            ),
            rx.badge(rx.cond(rule.enabled, "enabled", "disabled"), variant="outline", size="1"),
        )),
        data_rule=rule.name, class_name="rule-row",
    )  # fmt: skip
    return row


def _rules() -> rx.Component:
    headers = ("Rule", "Scope", "Condition", "Severity", "Notify", "Last fired", "Open / all", "")
    section: rx.Component = rx.vstack(
        rx.hstack(
            rx.text("Rules fire into incidents: one open incident per rule and subject, counting repeats.",
                    size="2", color_scheme="gray"),
            rx.spacer(),
            rx.cond(RulesState.can_create, rx.button(rx.icon("plus", size=14), "New rule",
                                                     on_click=RuleEditorState.open_new, id="rule-new")),
            width="100%", align="center",
        ),
        error_callout(RulesState.error, size="2"),
        data_table(headers, rx.foreach(RulesState.rules, _rule), "rules-table", plain=True, size="1",
                   class_name="data-table"),
        _editor(),
        spacing="3", width="100%",
    )  # fmt: skip
    return section


def _incident(row: IncidentRow) -> rx.Component:
    item: rx.Component = body_row(
        rx.table.cell(severity_badge(row.severity)),
        rx.table.cell(name_over_detail(row.title, row.subject)),
        text_cell(row.rule, size="1"),
        rx.table.cell(state_badge(row.state)),
        number_cell(row.count),
        number_cell(row.last_fired, size="1"),
        on_click=IncidentState.open(row.id), class_name="clickable incident-row", data_incident=row.id,
    )  # fmt: skip
    return item


def _timeline_line(line: TimelineRow) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.box(width="8px", height="8px", border_radius="50%", background=rx.color(line.tone, 9), flex_shrink="0"),
        rx.text(line.at, size="1", class_name="tabular", color_scheme="gray", min_width="140px"),
        rx.text(line.what, size="2", weight="medium"),
        rx.text(line.detail, size="1", color_scheme="gray"),
        spacing="2", align="center", class_name="timeline-line",
    )  # fmt: skip
    return item


def _incident_dialog() -> rx.Component:
    facts = (("Rule", INCIDENT.rule), ("Subject", INCIDENT.subject), ("Count", INCIDENT.count),
             ("First fired", INCIDENT.first_fired), ("Last fired", INCIDENT.last_fired),
             ("Acknowledged", INCIDENT.acked), ("Snoozed until", INCIDENT.snoozed_until),
             ("Resolved", INCIDENT.resolved), ("Escalation level", INCIDENT.escalation_level))  # fmt: skip
    actions = rx.hstack(
        rx.button(rx.icon("check", size=14), "Acknowledge", on_click=IncidentState.ack, id="incident-ack",
                  disabled=INCIDENT.state != "open", loading=IncidentState.is_acting),
        rx.select.root(
            rx.select.trigger(width="110px"),
            rx.select.content(*(rx.select.item(f"for {k}", value=k) for k in SNOOZE_CHOICES),
                              rx.select.item("until…", value="until")),
            value=IncidentState.snooze_choice, on_change=IncidentState.set_snooze_choice,
        ),
        rx.cond(IncidentState.snooze_choice == "until",
                rx.input(type="datetime-local", value=IncidentState.snooze_custom,
                         on_change=IncidentState.set_snooze_custom, id="incident-snooze-until")),
        rx.button(rx.icon("alarm-clock-off", size=14), "Snooze", variant="soft", on_click=IncidentState.snooze,
                  id="incident-snooze"),
        rx.button(rx.icon("circle-check", size=14), "Resolve", variant="soft", color_scheme="grass",
                  on_click=IncidentState.resolve, id="incident-resolve"),
        spacing="2", align="center", wrap="wrap",
    )  # fmt: skip
    dialog: rx.Component = form_dialog(
        rx.hstack(
            severity_badge(INCIDENT.severity), state_badge(INCIDENT.state),
            rx.dialog.title(INCIDENT.title, margin="0", id="incident-title"), spacing="2", align="center",
        ),
        rx.text(INCIDENT.summary, size="2", color_scheme="gray", margin_y="8px"),
        error_callout(IncidentState.error, "incident-error"),
        rx.grid(*(fact(label, value) for label, value in facts), columns="3", spacing="3", width="100%",
                margin_y="12px"),
        rx.cond(INCIDENT.run_href != "", rx.link(rx.hstack(rx.icon("external-link", size=14), "Open the run",
                                                            spacing="1", align="center"),
                                                  href=INCIDENT.run_href, id="incident-run")),
        rx.cond(IncidentState.can_act & (INCIDENT.state != "resolved"), rx.box(actions, margin_y="12px")),
        rx.heading("Timeline: firings, messages sent, acks", size="3", margin_top="12px"),
        rx.vstack(rx.foreach(IncidentState.timeline, _timeline_line), spacing="1", id="incident-timeline",
                  margin_top="8px"),
        rx.hstack(rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray")), justify="end",
                  margin_top="16px"),
        is_open=IncidentState.is_open, on_open_change=IncidentState.set_open,
        max_width="900px", width="92vw", id="incident-detail",
    )  # fmt: skip
    return dialog


def _incidents() -> rx.Component:
    section: rx.Component = rx.vstack(
        rx.hstack(
            rx.segmented_control.root(
                *(rx.segmented_control.item(label, value=value) for value, label in
                  (("open", "Open"), ("acked", "Acked"), ("resolved", "Resolved"), (ALL, "All"))),
                value=IncidentsState.state_filter, id="incident-states",
                on_change=lambda v: IncidentsState.set_state_filter(v),
            ),
            rx.select.root(
                rx.select.trigger(width="150px"),
                rx.select.content(rx.select.item("every severity", value=ALL),
                                  *(rx.select.item(s, value=s) for s in ("info", "warning", "critical"))),
                value=IncidentsState.severity, on_change=IncidentsState.set_severity,
            ),
            text_search(IncidentsState.text, IncidentsState.set_text, "Search title or subject", "incident-search",
                        "260px"),
            spacing="3", align="center", wrap="wrap",
        ),
        error_callout(IncidentsState.error, size="2"),
        data_table(("Severity", "Incident", "Rule", "State", "Count", "Last fired"),
                   rx.foreach(IncidentsState.rows, _incident), "incidents-table", plain=True, size="1",
                   class_name="data-table"),
        rx.cond(IncidentsState.loaded & (IncidentsState.rows.length() == 0),
                rx.text("No incident here.", color_scheme="gray", size="2", id="incidents-empty")),
        keyset_pager(IncidentsState, size="1"),
        live_ticker(REFRESH_MS, IncidentsState.load),
        _incident_dialog(),
        spacing="3", width="100%",
    )  # fmt: skip
    return section


@layout(route=routes.ALERTS, title="Alerts",
        on_load=[IncidentsState.open_page, RulesState.load, IncidentState.open_from_url])  # fmt: skip
def alerts_page() -> rx.Component:
    content: rx.Component = rx.tabs.root(
        rx.tabs.list(rx.tabs.trigger("Incidents", value="incidents", id="tab-incidents"),
                     rx.tabs.trigger("Rules", value="rules", id="tab-rules")),
        rx.tabs.content(rx.box(_incidents(), padding_top="16px"), value="incidents"),
        rx.tabs.content(rx.box(_rules(), padding_top="16px"), value="rules"),
        default_value="incidents", width="100%",
    )  # fmt: skip
    return content
