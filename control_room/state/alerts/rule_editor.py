"""The rule editor (admins): create or change a rule of any kind, and preview it against the last 7 days."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import reflex as rx

from control_room.db.tables import AlertRule
from control_room.services import alert_preview, alerts
from control_room.services.errors import Invalid
from control_room.state.alerts.rules import RulesState
from control_room.state.base import ALL, SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, setter

KINDS = tuple(alert_preview.QUERIES)
# The settings each kind reads (the scope fields apply to all).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "run_failed": (),
    "task_failed": ("match_pool",),
    "run_duration": ("threshold", "factor", "baseline_runs"),
    "queue_wait": ("threshold", "window_s", "match_pool"),
    "executor_offline": ("threshold", "match_pool"),
    "cap_breach": ("cap_percent",),
    "sla": ("sla_time", "sla_timezone"),
    "schedule_missed": ("window_s",),
    "dataset_freshness": ("dataset_name", "threshold"),
    "event_match": ("event_type", "event_level", "event_attributes"),
}
NUMBERS = {"threshold": int, "window_s": int, "baseline_runs": int, "cap_percent": int, "escalate_after_s": int,
           "factor": float}  # fmt: skip
TEXTS = ("match_pool", "sla_time", "sla_timezone", "event_type", "dataset_name")
ORG_WIDE = "org"
BLANK_FORM = {
    "name": "", "kind": "run_failed", "severity": "warning", "scope": ORG_WIDE, "environment": ALL,
    "threshold": "", "window_s": "", "factor": "", "baseline_runs": "20", "cap_percent": "", "match_pool": "",
    "sla_time": "", "sla_timezone": "UTC", "event_type": "", "event_level": ALL, "event_attributes": "{}",
    "dataset_name": "", "notify": "", "escalate_after_s": "900", "description": "",
}  # fmt: skip


def form_of(rule: AlertRule) -> dict[str, str]:
    """The editor's text fields for a stored rule."""
    form = {key: "" if (value := getattr(rule, key, None)) is None else str(value) for key in BLANK_FORM}
    form["scope"] = str(rule.project_id) if rule.project_id else ORG_WIDE
    form["environment"] = rule.match_environment or ALL
    form["event_level"] = rule.event_level or ALL
    form["event_attributes"] = json.dumps(rule.event_attributes or {})
    form["notify"] = ", ".join(rule.notify)
    form["sla_time"] = rule.sla_time.strftime("%H:%M") if rule.sla_time else ""
    return form


def rule_fields(form: dict[str, str], *, escalate: bool, enabled: bool) -> dict[str, Any]:
    """The rule's column values from the editor's text fields; Invalid naming the field at fault."""
    kind = form["kind"]
    if kind not in KIND_FIELDS:
        raise Invalid(f'unknown rule kind "{kind}"', field="kind")
    shown = KIND_FIELDS[kind]
    fields: dict[str, Any] = {
        "name": form["name"].strip(), "kind": kind, "severity": form["severity"],
        "project_id": None if form["scope"] == ORG_WIDE else form["scope"],
        "match_environment": None if form["environment"] == ALL else form["environment"],
        "notify": [t.strip() for t in form["notify"].replace("\n", ",").split(",") if t.strip()],
        "escalate": escalate, "enabled": enabled, "description": form["description"].strip(),
        "event_level": None, "event_attributes": {},
    }  # fmt: skip
    for name, kind_of in NUMBERS.items():
        text = form[name].strip()
        if name in shown or name == "escalate_after_s":
            try:
                fields[name] = kind_of(text) if text else None
            except ValueError as exc:
                raise Invalid(f"{name} must be a number, not {text!r}", field=name) from exc
        else:
            fields[name] = None
    fields["baseline_runs"] = fields["baseline_runs"] or 20
    fields["escalate_after_s"] = fields["escalate_after_s"] or 900
    for name in TEXTS:
        fields[name] = (form[name].strip() or None) if name in shown else None
    fields["sla_timezone"] = fields["sla_timezone"] or "UTC"
    if "event_level" in shown and form["event_level"] != ALL:
        fields["event_level"] = form["event_level"]
    if "event_attributes" in shown:
        try:
            attributes = json.loads(form["event_attributes"] or "{}")
        except json.JSONDecodeError as exc:
            raise Invalid(f"event attributes must be a JSON object: {exc.msg}", field="event_attributes") from exc
        if not isinstance(attributes, dict):
            raise Invalid("event attributes must be a JSON object such as {\"check\": \"nulls\"}",
                          field="event_attributes")  # fmt: skip
        fields["event_attributes"] = attributes
    return fields


class RuleEditorState(SessionState):
    """The editor dialog: a new rule or an existing one, its text fields, save and the 7-day preview."""

    is_open: rx.Field[bool] = rx.field(False)
    rule_id: rx.Field[str] = rx.field("")
    form: rx.Field[dict[str, str]] = rx.field(default_factory=lambda: dict(BLANK_FORM))
    escalate: rx.Field[bool] = rx.field(False)
    enabled: rx.Field[bool] = rx.field(True)
    error: rx.Field[str] = rx.field("")
    is_saving: rx.Field[bool] = rx.field(False)
    preview_text: rx.Field[str] = rx.field("")
    preview_days: rx.Field[list[list[str]]] = rx.field(default_factory=list)
    preview_subjects: rx.Field[list[list[str]]] = rx.field(default_factory=list)
    preview_note: rx.Field[str] = rx.field("")

    @rx.var
    def shown(self) -> list[str]:
        """The settings of the chosen kind."""
        return list(KIND_FIELDS.get(self.form.get("kind", ""), ()))

    def _reset(self, form: dict[str, str], rule_id: str, *, escalate: bool, enabled: bool) -> None:
        self.form, self.rule_id, self.escalate, self.enabled = form, rule_id, escalate, enabled
        self.error = self.preview_text = self.preview_note = ""
        self.preview_days, self.preview_subjects = [], []
        self.is_open = True

    @handler
    def open_new(self) -> None:
        """An empty rule, scoped to the selected project when the user is not an org admin."""
        form = dict(BLANK_FORM)
        if not self.is_org_admin and self.project_id:
            form["scope"] = self.project_id
        self._reset(form, "", escalate=False, enabled=True)

    @signed_in_event
    async def open_edit(self, signed: SignedIn, rule_id: str) -> None:
        def show(rule: AlertRule) -> None:
            self._reset(form_of(rule), rule_id, escalate=rule.escalate, enabled=rule.enabled)

        await self._read_shown(
            lambda conn, _: alerts.rule(conn, uuid.UUID(rule_id)), show, signed=signed, needs_project=False
        )

    @handler
    def set_field(self, name: str, value: str) -> None:
        if name in BLANK_FORM:
            self.form = {**self.form, name: value[:2000]}

    set_escalate = setter("escalate")
    set_enabled = setter("enabled")

    @handler
    def set_open(self, value: bool) -> None:
        self.is_open = value

    async def _signed_fields(
        self, form: dict[str, str], *, escalate: bool, enabled: bool
    ) -> tuple[SignedIn, uuid.UUID, dict[str, Any]]:
        """Who acts, in which project, and the rule's column values from the form."""
        signed = await self.signed_in()
        if signed is None or signed.project_id is None:
            raise Invalid("sign in and choose a project first")
        return signed, signed.project_id, rule_fields(form, escalate=escalate, enabled=enabled)

    @background
    @exclusive("is_saving")
    async def save(self) -> AsyncIterator[Any]:
        """Create or update the rule as the signed-in user (RLS: its admins only); audited in SQL."""
        async with self:
            form, rule_id, escalate, enabled = dict(self.form), self.rule_id, self.escalate, self.enabled
        error = ""
        try:
            signed, project_id, fields = await self._signed_fields(form, escalate=escalate, enabled=enabled)
            async with as_user(signed.principal) as conn:
                if rule_id:
                    if await alerts.update_rule(conn, rule_id=uuid.UUID(rule_id), fields=fields) is None:
                        raise Invalid("only the rule's admins may change it (org admins, or the project's)")
                else:
                    org = await alerts.project_org(conn, project_id)
                    await alerts.create_rule(conn, org_id=org, fields=fields)
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            self.error = error
            self.is_open = bool(error)
        if not error:
            yield RulesState.load

    @background
    async def preview(self) -> None:
        """How often the rule as edited would have fired in the last 7 days."""
        async with self:
            form, escalate, enabled = dict(self.form), self.escalate, self.enabled
            self.preview_text = "Replaying the last 7 days…"
        try:
            signed, project_id, fields = await self._signed_fields(form, escalate=escalate, enabled=enabled)
            async with as_user(signed.principal) as conn:
                org = await alerts.project_org(conn, project_id)
                found = await alert_preview.preview_rule(conn, org_id=org, rule=fields, now=datetime.now(UTC))
        except Exception as exc:
            async with self:
                self.preview_text, self.preview_days, self.preview_subjects = problem_text(exc), [], []
            return
        async with self:
            self.preview_text = (
                f"Would have fired {found.firings} time(s) on {found.subjects} subject(s) "
                f"in the last {alert_preview.PREVIEW_DAYS} days."
            )
            self.preview_days = [[day, str(n)] for day, n in found.by_day]
            self.preview_subjects = [[subject, str(n)] for subject, n in found.top_subjects]
            self.preview_note = found.note
