"""Access policies: the org's grants, row filters and column masks on datasets, schemas and tags; groups;
an editor (admins, and owners for their datasets); the simulator with its reason; the audit of changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import section_card
from control_room.components.layout import layout, section_column
from control_room.components.table_rows import body_row, text_cell
from control_room.components.tables import data_table, result_table
from control_room.state.policies import PoliciesState
from control_room.state.rows import AuditRow, PolicyRow

DRAFT: Any = PoliciesState.draft
QUESTION: Any = PoliciesState.question
PREVIEW: Any = PoliciesState.preview


def _policy(row: PolicyRow) -> rx.Component:
    item: rx.Component = body_row(
        text_cell(row.name, weight="medium"),
        rx.table.cell(rx.badge(row.kind, variant="surface", size="1")),
        text_cell(row.target, size="2"),
        text_cell(row.who, size="2"),
        rx.table.cell(rx.code(row.what, variant="ghost")),
        class_name="policy-row",
    )
    return item


def _audit(row: AuditRow) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.text(row.at, size="1", color_scheme="gray", class_name="tabular"),
        rx.badge(rx.cond(row.refusal, "refusal", "change"), color_scheme=rx.cond(row.refusal, "red", "gray"),
                 variant="soft", size="1"),
        rx.text(row.actor, size="1"),
        rx.text(row.what, size="2"),
        spacing="3", class_name="policy-audit-line",
    )  # fmt: skip
    return item


@dataclass(frozen=True)
class _Form:
    """One form of the page: the state dict holding its fields, that dict's setter (field, value), and the prefix
    of its controls' ids (``<prefix>-<field>``, underscores as dashes)."""

    values: Any
    setter: Any
    prefix: str

    def _id(self, field: str) -> str:
        return f"{self.prefix}-{field.replace('_', '-')}"

    def select(self, field: str, choices: list[tuple[str, str]]) -> rx.Component:
        """A native select of (value, label) choices."""
        control: rx.Component = rx.el.select(
            *[rx.el.option(label, value=value) for value, label in choices], value=self.values[field].to(str),
            on_change=lambda value: self.setter(field, value), id=self._id(field), class_name="policy-select",
        )  # fmt: skip
        return control

    def input(self, field: str, placeholder: str, width: str = "200px") -> rx.Component:
        """A text input."""
        control: rx.Component = rx.input(
            placeholder=placeholder, value=self.values[field].to(str), width=width,
            on_change=lambda value: self.setter(field, value), id=self._id(field),
        )  # fmt: skip
        return control


DRAFT_FORM = _Form(DRAFT, PoliciesState.set_draft, "policy")
QUESTION_FORM = _Form(QUESTION, PoliciesState.set_question, "simulate")
PREVIEW_FORM = _Form(PREVIEW, PoliciesState.set_preview, "preview")


def _policy_select(field: str, options: list[str], placeholder: str) -> rx.Component:
    """A select of the policy draft; its first, empty choice shows what an empty choice means."""
    choices = [("", placeholder), *[(option, option.replace("_", " ")) for option in options]]
    return DRAFT_FORM.select(field, choices)


def _editor() -> rx.Component:
    return section_card(
        "New or changed policy",
        rx.hstack(
            DRAFT_FORM.input("name", "name, e.g. mask-email"),
            _policy_select("kind", ["grant", "deny", "row_filter", "column_mask"], "kind"),
            _policy_select("target_kind", ["dataset", "schema", "tag"], "on (dataset)"),
            DRAFT_FORM.input("target", "dataset name, schema prefix or tag", "260px"),
            wrap="wrap", spacing="2",
        ),
        rx.hstack(
            _policy_select("principal_kind", ["everyone", "group", "user", "service_principal"], "for (everyone)"),
            DRAFT_FORM.input("principal", "group, e-mail or service principal", "240px"),
            _policy_select("privilege", ["read", "write", "admin"], "privilege"),
            wrap="wrap", spacing="2",
        ),
        rx.hstack(
            DRAFT_FORM.input("mask_column", "column to mask"),
            _policy_select("mask_kind", ["null", "hash", "redact", "partial", "expression"], "mask"),
            DRAFT_FORM.input("row_filter", "row filter, e.g. region = 'EU'", "320px"),
            wrap="wrap", spacing="2",
        ),
        rx.button("Save policy", on_click=PoliciesState.save_policy, id="policy-save"),
        spacing="3",
    )  # fmt: skip


def _groups() -> rx.Component:
    return section_card(
        "Groups",
        rx.foreach(PoliciesState.groups, lambda line: rx.text(line, size="2", class_name="policy-group")),
        rx.cond(PoliciesState.can_edit_groups, rx.hstack(
            rx.input(placeholder="group, e.g. analysts", value=PoliciesState.group_name,
                     on_change=PoliciesState.set_group_name, id="group-name"),
            rx.input(placeholder="members' e-mails, comma-separated", value=PoliciesState.group_members,
                     on_change=PoliciesState.set_group_members, width="320px", id="group-members"),
            rx.button("Save group", on_click=PoliciesState.save_group, variant="soft", id="group-save"),
            spacing="2", wrap="wrap",
        )),
        spacing="2",
    )  # fmt: skip


def _simulator() -> rx.Component:
    return section_card(
        "Simulator",
        rx.hstack(
            QUESTION_FORM.select("kind", [("group", "group"), ("user", "user")]),
            QUESTION_FORM.input("principal", "analysts", "160px"),
            rx.text("read column", size="2"),
            QUESTION_FORM.input("column", "email (optional)", "140px"),
            rx.text("of", size="2"),
            QUESTION_FORM.input("dataset", "customers"),
            rx.button("Ask", on_click=PoliciesState.simulate, variant="soft", id="simulate-ask"),
            spacing="2", align="center", wrap="wrap",
        ),
        rx.cond(PoliciesState.verdict != "",
                rx.callout(PoliciesState.verdict, size="1", id="simulate-verdict",
                           color_scheme=rx.cond(PoliciesState.verdict_allowed, "green", "red"))),
        spacing="2",
    )  # fmt: skip


def _preview() -> rx.Component:
    """As principal X, this query returns…: a run acting as X on the warehouse (its editors only)."""
    return section_card(
        "Preview as a principal",
        rx.text("Runs the query on the warehouse as them: their refusals, row filters and masks apply as in "
                "their own tasks.", size="1", color_scheme="gray"),
        rx.hstack(
            rx.text("As", size="2"),
            PREVIEW_FORM.select("kind", [("group", "a member of group"), ("user", "user"),
                                         ("service_principal", "service principal")]),
            PREVIEW_FORM.input("principal", "analysts, or an e-mail", "220px"),
            rx.text("on", size="2"),
            PREVIEW_FORM.input("dataset", "customers", "220px"),
            spacing="2", align="center", wrap="wrap",
        ),
        rx.text_area(placeholder="A query (empty: the dataset's first 20 rows, every column)",
                     value=PREVIEW["sql"].to(str), on_change=lambda v: PREVIEW_FORM.setter("sql", v), id="preview-sql",
                     width="100%", rows="2"),
        rx.hstack(
            rx.button("Run preview", on_click=PoliciesState.run_preview, loading=PoliciesState.preview_running,
                      id="preview-run"),
            rx.text(PoliciesState.preview_status, size="2", color_scheme="gray", id="preview-status"),
            spacing="3", align="center",
        ),
        error_callout(PoliciesState.preview_error, "preview-error"),
        rx.cond(PoliciesState.preview_columns.length() > 0, result_table(
            PoliciesState.preview_columns, PoliciesState.preview_rows,
            cell=lambda value: rx.code(value, variant="ghost"), width="100%", id="preview-table",
        )),
        spacing="2", width="100%",
    )  # fmt: skip


@layout(route=routes.POLICIES, title="Access policies", on_load=PoliciesState.load)
def policies_page() -> rx.Component:
    return section_column(
        rx.heading("Access policies", size="6"),
        rx.text("Grants, row filters and column masks, enforced by the SQL engines' agents and the catalog.",
                size="2", color_scheme="gray"),
        error_callout(PoliciesState.error, "policies-error", size="2"),
        rx.cond(PoliciesState.notice != "", rx.callout(PoliciesState.notice, icon="check", color_scheme="green",
                                                       size="1", id="policies-notice")),
        data_table(("Policy", "Kind", "On", "For", "What"), rx.foreach(PoliciesState.policies, _policy),
                   "policies-table", plain=True),
        rx.cond(
            PoliciesState.can_edit_policies, _editor(),
            rx.text("Only org admins, and the owners of a dataset for its own policies, edit access policies.",
                    size="2", color_scheme="gray", id="policies-read-only"),
        ),
        rx.grid(_groups(), _simulator(), columns="2", spacing="4", width="100%"),
        rx.cond(PoliciesState.can_edit_policies, _preview()),
        rx.heading("Audit", size="3"),
        rx.vstack(rx.foreach(PoliciesState.audit_rows, _audit), spacing="1", id="policies-audit"),
    )  # fmt: skip
