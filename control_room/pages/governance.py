"""Routing & caps: the routing matrix editor with live warnings and the simulator, caps with live usage,
ownership and escalation, and drift against the last deployed bundle (admins edit; everyone else reads)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.draggable import draggable_row
from control_room.components.forms import dialog_actions, error_callout, field_label, form_dialog
from control_room.components.headings import section_card, titled_card
from control_room.components.layout import layout
from control_room.components.live import live_intro, live_ticker
from control_room.components.status import badge_list
from control_room.components.table_rows import body_row, text_cell
from control_room.components.tables import data_table
from control_room.services import caps, routing
from control_room.state.governance import REFRESH_MS, GovernanceState

# Dict and dataclass vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
EDIT: Any = GovernanceState.edit
CAP_FORM: Any = GovernanceState.cap_form
SIM: Any = GovernanceState.sim
EFF_FORM: Any = GovernanceState.eff_form
ANY = "any"


def _select(name: str, options: list[str], value: Any, on_change: Any, width: str = "110px") -> rx.Component:
    select: rx.Component = rx.select(
        options,
        value=rx.cond(value == "", ANY, value),
        on_change=on_change,
        size="1",
        width=width,
        id=f"edit-{name}",
    )
    return select


def _input(name: str, placeholder: str = "", width: str = "100%") -> rx.Component:
    # Uncontrolled, saved on blur: clicking "Done" blurs the field first, so its value is never lost to a
    # debounce still pending.
    box: rx.Component = rx.input(
        default_value=EDIT[name],
        on_blur=lambda v: GovernanceState.set_edit(name, v),
        placeholder=placeholder,
        size="1",
        width=width,
        id=f"edit-{name}",
    )
    return box


def _enabled_switch(row: Any, **props: Any) -> rx.Component:
    """The switch that turns a rule on or off (in the draft); ``props`` go to the switch."""
    switch: rx.Component = rx.switch(
        checked=row.enabled, on_change=lambda _: GovernanceState.toggle_enabled(row.key), size="1", **props
    )
    return switch


def _on_off(enabled: Any) -> rx.Component:
    """A rule's or a cap's state, read only: a green "on" or a grey "off"."""
    badge: rx.Component = rx.badge(
        rx.cond(enabled, "on", "off"), color_scheme=rx.cond(enabled, "grass", "gray"), size="1"
    )
    return badge


def _amber_notes(lines: Any, icon: str, class_name: str) -> rx.Component:
    """An amber callout per line of ``lines`` (a warning, a reason to wait), each of class ``class_name``."""
    notes: rx.Component = rx.foreach(
        lines, lambda line: rx.callout(line, icon=icon, color_scheme="amber", size="1", class_name=class_name)
    )
    return notes


def _small_lines(lines: Any, class_name: str = "mono") -> rx.Component:
    """A small text per line of ``lines`` (a change, a rerouted task), each of class ``class_name``."""
    texts: rx.Component = rx.foreach(lines, lambda line: rx.text(line, size="1", class_name=class_name))
    return texts


def _surface_table(head: Any, body: rx.Component, element_id: str) -> rx.Component:
    """A full-width table of this page in the small surface look."""
    return data_table(head, body, element_id, plain=True, variant="surface", size="1")


def _edit_cells(row: Any, index: Any) -> list[rx.Component]:
    return [
        rx.table.cell(rx.text(index + 1, size="2", class_name="tabular")),
        rx.table.cell(
            rx.vstack(
                _input("name", "rule name"),
                rx.cond(
                    GovernanceState.edit_error != "",
                    rx.text(GovernanceState.edit_error, color_scheme="red", size="1", id="edit-error"),
                ),
                spacing="1",
            )
        ),
        rx.table.cell(
            rx.vstack(
                rx.hstack(
                    rx.select.root(
                        rx.select.trigger(placeholder="project", width="120px", id="edit-project"),
                        rx.select.content(
                            rx.select.item(ANY, value=ANY),
                            rx.foreach(GovernanceState.projects_in_org, lambda p: rx.select.item(p, value=p)),
                        ),
                        value=rx.cond(EDIT["project"] == "", ANY, EDIT["project"]),
                        size="1",
                        on_change=lambda v: GovernanceState.set_edit("project", v),
                    ),
                    _select(
                        "environment",
                        [ANY, *routing.ENVIRONMENTS],
                        EDIT["environment"],
                        lambda v: GovernanceState.set_edit("environment", v),
                    ),
                    spacing="1",
                ),
                _input("engine", "engine (any)"),
                _input("labels", "task labels, comma separated"),
                _input("tags", "run tags, comma separated"),
                spacing="1",
            )
        ),
        rx.table.cell(rx.vstack(_input("pool", "pool"), _input("required_labels", "required labels"), spacing="1")),
        rx.table.cell(rx.vstack(_input("owner", "owner"), _input("escalation", "escalation chain"), spacing="1")),
        rx.table.cell(_enabled_switch(row)),
        rx.table.cell(
            rx.hstack(
                rx.button("Done", size="1", on_click=GovernanceState.finish_edit, id="edit-done"),
                rx.button(
                    "Cancel", size="1", variant="soft", color_scheme="gray", on_click=GovernanceState.cancel_edit
                ),
                spacing="1",
            )
        ),
    ]


def _admin_actions(row: Any, index: Any) -> rx.Component:
    def icon(name: str, label: str, on_click: Any, disabled: Any = False, color: str = "gray") -> rx.Component:
        button: rx.Component = rx.tooltip(
            rx.icon_button(
                rx.icon(name, size=13),
                size="1",
                variant="ghost",
                color_scheme=color,
                on_click=on_click,
                disabled=disabled,
                aria_label=label,
                class_name=f"rule-{name}",
            ),
            content=label,
        )
        return button

    actions: rx.Component = rx.hstack(
        icon("arrow-up", "Move up", GovernanceState.move(row.key, -1), index == 0),
        icon("arrow-down", "Move down", GovernanceState.move(row.key, 1), index == GovernanceState.rules.length() - 1),
        icon("pencil", "Edit", GovernanceState.start_edit(row.key)),
        icon("copy", "Duplicate", GovernanceState.duplicate(row.key)),
        icon("trash-2", "Delete", GovernanceState.remove(row.key), color="red"),
        spacing="2",
    )
    return actions


def _view_cells(row: Any, index: Any) -> list[rx.Component]:
    return [
        rx.table.cell(
            rx.hstack(
                rx.cond(
                    GovernanceState.can_edit,
                    rx.tooltip(
                        rx.icon("grip-vertical", size=14, color=rx.color("gray", 9), class_name="rule-grip"),
                        content="Drag to reorder (or use the arrows)",
                    ),
                ),
                rx.text(index + 1, size="2", class_name="tabular", color_scheme="gray"),
                spacing="1",
                align="center",
                cursor=rx.cond(GovernanceState.can_edit, "grab", "default"),
            )
        ),
        rx.table.cell(
            rx.vstack(
                rx.hstack(
                    rx.text(row.name, weight="medium", size="2"),
                    rx.cond(row.changed, rx.badge("draft", color_scheme="amber", size="1", variant="soft")),
                    rx.cond(
                        SIM.ran & (SIM.rule == row.name),
                        rx.badge("simulated match", color_scheme="grass", size="1", class_name="sim-match"),
                    ),
                    spacing="2",
                    align="center",
                ),
                rx.foreach(
                    row.warnings, lambda w: rx.text("⚠ ", w, size="1", color_scheme="amber", class_name="rule-warning")
                ),
                spacing="1",
            )
        ),
        rx.table.cell(badge_list(row.match, "indigo")),
        rx.table.cell(
            rx.vstack(
                rx.badge(row.pool, variant="outline", color_scheme="gray"),
                rx.cond(
                    row.required_labels != "", rx.text("needs ", row.required_labels, size="1", color_scheme="gray")
                ),
                spacing="1",
            )
        ),
        rx.table.cell(
            rx.vstack(
                rx.text(rx.cond(row.owner != "", row.owner, "—"), size="1"),
                rx.cond(row.escalation != "", rx.text("then ", row.escalation, size="1", color_scheme="gray")),
                spacing="0",
            )
        ),
        rx.table.cell(
            rx.cond(GovernanceState.can_edit, _enabled_switch(row, class_name="rule-enabled"), _on_off(row.enabled))
        ),
        rx.cond(GovernanceState.can_edit, rx.table.cell(_admin_actions(row, index))),
    ]


def _rule_row(row: Any, index: Any) -> rx.Component:
    sim_match = SIM.ran & (SIM.rule == row.name)
    drop_here = GovernanceState.drag_over == row.key
    moving_down = GovernanceState.drag_from_index < index
    tr: rx.Component = rx.cond(
        GovernanceState.editing == row.key,
        rx.table.row(*_edit_cells(row, index), data_rule=row.name, class_name="rule-row editing"),
        draggable_row(
            *_view_cells(row, index),
            enabled=GovernanceState.can_edit & (GovernanceState.editing == ""),
            on_start=GovernanceState.drag_start(row.key),
            on_enter=GovernanceState.drag_enter(row.key),
            on_drop=GovernanceState.drop_on(row.key),
            on_end=GovernanceState.drag_end,
            data_rule=row.name,
            data_enabled=rx.cond(row.enabled, "true", "false"),
            class_name="rule-row",
            background=rx.cond(
                sim_match, rx.color("grass", 3), rx.cond(row.enabled, "transparent", rx.color("gray", 2))
            ),
            # Where a dragged rule would land: a line above or below the row it is over.
            box_shadow=rx.cond(
                drop_here,
                rx.cond(
                    moving_down, f"inset 0 -3px 0 {rx.color('accent', 9)}", f"inset 0 3px 0 {rx.color('accent', 9)}"
                ),
                "none",
            ),
            opacity=rx.cond(GovernanceState.dragging == row.key, "0.4", rx.cond(row.enabled, "1", "0.6")),
        ),
    )
    return tr


def _matrix() -> rx.Component:
    heads = ["#", "Rule", "Match", "Pool", "Owner / escalation", "On"]
    toolbar: rx.Component = rx.hstack(
        rx.heading("Routing matrix", size="3"),
        rx.text("first enabled match wins", size="1", color_scheme="gray"),
        rx.spacer(),
        rx.cond(
            GovernanceState.can_edit,
            rx.hstack(
                rx.button(
                    rx.icon("plus", size=14),
                    "Add rule",
                    size="1",
                    variant="soft",
                    on_click=GovernanceState.add_rule,
                    id="add-rule",
                ),
                rx.button(
                    "Discard draft",
                    size="1",
                    variant="soft",
                    color_scheme="gray",
                    on_click=GovernanceState.discard,
                    disabled=~GovernanceState.dirty,
                    id="discard-draft",
                ),
                rx.button(
                    rx.icon("git-compare", size=14),
                    "Review & apply",
                    rx.cond(GovernanceState.dirty, rx.badge(GovernanceState.change_count, size="1")),
                    size="1",
                    on_click=GovernanceState.review,
                    disabled=~GovernanceState.dirty,
                    id="review-apply",
                ),
                spacing="2",
            ),
            rx.badge("read only: org admins edit", color_scheme="gray", variant="soft", id="read-only"),
        ),
        width="100%",
        align="center",
    )
    table = _surface_table(
        (*heads, rx.cond(GovernanceState.can_edit, rx.table.column_header_cell("Actions"))),
        rx.foreach(GovernanceState.rules, _rule_row),
        "rules-table",
    )
    warnings = _amber_notes(GovernanceState.matrix_warnings, "triangle-alert", "matrix-warning")
    return titled_card(toolbar, warnings, table, spacing="3")


def _verdict(v: Any) -> rx.Component:
    row: rx.Component = rx.hstack(
        rx.icon(
            rx.cond(v.matched, "circle-check", "circle-minus"),
            size=14,
            color=rx.cond(v.matched, rx.color("grass", 10), rx.color("gray", 9)),
        ),
        rx.text(v.name, size="1", weight="medium", min_width="96px"),
        rx.text(v.reasons, size="1", color_scheme="gray"),
        spacing="2",
        align="start",
        class_name="sim-verdict",
    )
    return row


def _with_tightest_badge(tightest: Any, *children: rx.Component) -> rx.Component:
    """``children`` in a row, then a "tightest" badge when theirs is the tightest of the limits that apply."""
    row: rx.Component = rx.hstack(
        *children,
        rx.cond(tightest, rx.badge("tightest", size="1", color_scheme="crimson", variant="soft")),
        spacing="2",
    )
    return row


def _applied_cap(c: Any) -> rx.Component:
    return _with_tightest_badge(
        c.tightest,
        rx.text(c.name, size="1", weight=rx.cond(c.tightest, "bold", "regular")),
        rx.text(c.kind, " ≤ ", c.limit_label, size="1", color_scheme="gray"),
    )


def _form_field(form: str, name: str) -> tuple[Any, Any]:
    """Field ``name`` of the simulator ("sim") or effective-limits ("eff") form (state var ``<form>_form``), and
    its setter."""
    setter = getattr(GovernanceState, f"set_{form}")
    return getattr(getattr(GovernanceState, f"{form}_form"), name), lambda v: setter(name, v)


def _small_input(form: str, name: str, placeholder: str, **props: Any) -> rx.Component:
    """A small text input of the simulator or effective-limits form, id ``<form>-<name>``."""
    value, on_change = _form_field(form, name)
    field: rx.Component = rx.input(
        value=value, on_change=on_change, placeholder=placeholder, size="1", id=f"{form}-{name}", **props
    )
    return field


def _scope_pickers(form: str) -> list[rx.Component]:
    """The project and environment selects of the simulator or effective-limits form."""
    choices = {"project": GovernanceState.projects_in_org, "environment": list(routing.ENVIRONMENTS)}
    pickers = []
    for name, options in choices.items():
        value, on_change = _form_field(form, name)
        pickers.append(rx.select(options, value=value, size="1", on_change=on_change, id=f"{form}-{name}"))
    return pickers


def _simulator() -> rx.Component:
    result: rx.Component = rx.vstack(
        rx.hstack(
            rx.text("→ pool", size="2"),
            rx.badge(SIM.pool, size="2", id="sim-pool"),
            rx.text(rx.cond(SIM.rule != "", "by rule ", "no rule matched"), size="2"),
            rx.text(SIM.rule, size="2", weight="bold", id="sim-rule"),
            rx.cond(SIM.on_draft, rx.badge("your draft", color_scheme="amber", size="1")),
            spacing="2",
            align="center",
            wrap="wrap",
        ),
        rx.vstack(rx.foreach(SIM.verdicts, _verdict), spacing="1"),
        rx.text(
            "Could claim it now: ",
            rx.cond(SIM.executors.length() > 0, SIM.executors.join(", "), "none"),
            size="1",
            id="sim-executors",
        ),
        rx.text("Caps that apply", size="1", weight="medium"),
        rx.vstack(rx.foreach(SIM.caps, _applied_cap), spacing="1"),
        _amber_notes(SIM.waits, "hourglass", "sim-wait"),
        spacing="2",
        width="100%",
        id="sim-result",
    )
    form: rx.Component = rx.vstack(
        rx.hstack(
            *_scope_pickers("sim"),
            _small_input("sim", "engine", "engine", width="90px"),
            spacing="2",
        ),
        rx.hstack(
            _small_input("sim", "labels", "task labels"),
            _small_input("sim", "tags", "run tags"),
            rx.button(rx.icon("play", size=13), "Simulate", size="1", on_click=GovernanceState.simulate, id="simulate"),
            spacing="2",
        ),
        spacing="2",
    )
    card: rx.Component = section_card(
        "Simulator",
        rx.text("Where would such a task go, and what would hold it?", size="1", color_scheme="gray"),
        form,
        rx.cond(SIM.ran, result),
        spacing="3",
        width="100%",
        card_id="simulator",
    )
    return card


def _review_dialog() -> rx.Component:
    return form_dialog(
        "Apply the routing matrix",
        rx.vstack(
            rx.text("Changes", weight="medium", size="2"),
            rx.box(_small_lines(GovernanceState.diff_lines), id="review-diff"),
            rx.text("Queued work", weight="medium", size="2"),
            _small_lines(GovernanceState.reroute_lines, "reroute-line"),
            dialog_actions(
                "Apply", GovernanceState.apply, GovernanceState.is_applying, "apply-confirm", cancel="Keep editing"
            ),
            spacing="3",
            margin_top="12px",
        ),
        is_open=GovernanceState.review_open,
        on_open_change=GovernanceState.set_review_open,
        max_width="640px",
        description="One transaction; every rule's change is audited.",
    )


def _usage(cap: Any) -> rx.Component:
    cell: rx.Component = rx.vstack(
        rx.cond(
            cap.has_usage,
            rx.progress(
                value=cap.percent,
                size="1",
                width="120px",
                color_scheme=rx.cond(cap.percent >= 100, "red", rx.cond(cap.percent >= 80, "amber", "indigo")),
            ),
        ),
        rx.text(cap.used_label, size="1", color_scheme="gray", class_name="cap-used"),
        rx.cond(
            cap.waiting_reason != "",
            rx.text(cap.waiting_reason, size="1", color_scheme="amber", class_name="cap-waiting"),
        ),
        spacing="1",
    )
    return cell


def _refusal(r: Any) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.badge(
            r.layer,
            size="1",
            variant="soft",
            color_scheme=rx.match(r.layer, ("claim", "amber"), ("submit", "orange"), "red"),
        ),
        rx.tooltip(
            rx.cond(
                r.run_href != "",
                rx.link(r.run_label, href=r.run_href, size="1", class_name="cap-refusal-run"),
                # A refused submit made no run: what it would have been, and who asked.
                rx.text(r.run_label, size="1", class_name="cap-refusal-submit"),
            ),
            content=r.message,
        ),
        rx.text(r.when, size="1", color_scheme="gray", class_name="tabular"),
        spacing="1",
        align="center",
        wrap="nowrap",
        class_name="cap-refusal",
    )
    return item


def _refusals(cap: Any) -> rx.Component:
    """The refusals counted lately, then the last ones with links to their runs (hover: what happened)."""
    cell: rx.Component = rx.vstack(
        rx.cond(cap.refusals != "", rx.text(cap.refusals, size="1", color_scheme="gray")),
        rx.foreach(cap.recent, _refusal),
        spacing="1",
        class_name="cap-refusals",
    )
    return cell


def _cap_row(cap: Any) -> rx.Component:
    row: rx.Component = body_row(
        text_cell(cap.name, weight="medium", size="2"),
        text_cell(cap.target, size="2"),
        text_cell(cap.kind, size="1", class_name="mono"),
        text_cell(cap.limit_label, size="2", class_name="tabular cap-limit"),
        rx.table.cell(_usage(cap)),
        rx.table.cell(rx.badge(cap.layer, variant="soft", size="1")),
        rx.table.cell(_refusals(cap)),
        rx.table.cell(_on_off(cap.enabled)),
        rx.cond(
            GovernanceState.can_edit,
            rx.table.cell(
                rx.button(
                    "Edit", size="1", variant="soft", on_click=GovernanceState.open_cap(cap.id), class_name="cap-edit"
                )
            ),
        ),
        data_cap=cap.name,
    )
    return row


def _cap_field(name: str, label: str, options: Any = None, **props: Any) -> rx.Component:
    """One field of the cap editor: a select of ``options``, else a text input; its id is ``cap-<name>``."""
    value, on_change = CAP_FORM[name], lambda v: GovernanceState.set_cap_field(name, v)
    control = (
        rx.input(value=value, on_change=on_change, id=f"cap-{name}", **props)
        if options is None
        else rx.select(options, value=value, on_change=on_change, id=f"cap-{name}", **props)
    )
    return field_label(label, control)


def _cap_dialog() -> rx.Component:
    scope = CAP_FORM["scope"]
    delete = rx.cond(
        CAP_FORM["id"] != "",
        rx.button(
            "Delete",
            color_scheme="red",
            variant="soft",
            on_click=GovernanceState.delete_cap(CAP_FORM["id"]),
            id="cap-delete",
        ),
    )
    return form_dialog(
        rx.dialog.title(rx.cond(CAP_FORM["id"] == "", "New cap", "Edit cap")),
        rx.vstack(
            _cap_field("name", "Name"),
            rx.hstack(
                _cap_field("scope", "Scope", list(caps.SCOPES)),
                _cap_field("kind", "Kind", list(caps.KINDS)),
                _cap_field("limit", "Limit", width="110px"),
                spacing="3",
            ),
            rx.cond(
                (scope == "project") | (scope == "environment"),
                _cap_field("project", "Project", GovernanceState.projects_in_org),
            ),
            rx.cond(scope == "environment", _cap_field("environment", "Environment", list(routing.ENVIRONMENTS))),
            rx.cond(scope == "pool", _cap_field("pool", "Pool")),
            rx.cond(scope == "engine", _cap_field("engine", "Engine")),
            error_callout(GovernanceState.cap_error, "cap-error"),
            dialog_actions("Save", GovernanceState.save_cap, False, "cap-save", start=[delete]),
            spacing="3",
            margin_top="8px",
        ),
        is_open=GovernanceState.cap_open,
        on_open_change=GovernanceState.set_cap_open,
        max_width="560px",
    )


def _effective_limit(x: Any) -> rx.Component:
    row: rx.Component = body_row(
        text_cell(x.kind, size="1", class_name="mono"),
        rx.table.cell(
            rx.text(x.limit_label, size="1", class_name="tabular", weight=rx.cond(x.tightest, "bold", "regular"))
        ),
        rx.table.cell(_with_tightest_badge(x.tightest, rx.text(x.source, size="1", weight="medium"))),
        text_cell(x.target, size="1", color_scheme="gray"),
        rx.table.cell(rx.badge(x.layer, variant="soft", size="1")),
        text_cell(x.used_label, size="1", color_scheme="gray"),
        data_limit=x.source,
        data_tightest=rx.cond(x.tightest, "true", "false"),
        class_name="effective-limit",
    )
    return row


def _effective_task(t: Any) -> rx.Component:
    block: rx.Component = rx.vstack(
        rx.hstack(
            rx.text("Task ", rx.text.strong(t.key), " (", t.engine, ") → pool", size="2"),
            rx.badge(t.pool, variant="outline", color_scheme="gray"),
            rx.text(rx.cond(t.rule != "", "by rule " + t.rule, "no rule matched"), size="1", color_scheme="gray"),
            spacing="2",
            align="center",
        ),
        rx.cond(
            t.limits.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *(
                            rx.table.column_header_cell(h)
                            for h in ("Kind", "Limit", "From", "Covers", "Enforced at", "Usage now")
                        )
                    )
                ),
                rx.table.body(rx.foreach(t.limits, _effective_limit)),
                size="1",
                variant="ghost",
                width="100%",
            ),
            rx.text("No cap applies to this task.", size="1", color_scheme="gray"),
        ),
        spacing="2",
        width="100%",
        data_task=t.key,
        class_name="effective-task",
    )
    return block


def _effective_panel() -> rx.Component:
    """Which limits apply to a spec's tasks and which is tightest, without submitting anything."""
    card: rx.Component = section_card(
        "Effective caps for a spec",
        rx.text(
            "Paste a run spec or one task (YAML or JSON), or pick a job template: each task is routed as at "
            "enqueue, then every cap and the spec's own ceilings are weighed.",
            size="1",
            color_scheme="gray",
        ),
        rx.hstack(
            rx.select(
                GovernanceState.eff_templates,
                value=EFF_FORM.template,
                placeholder="pick a job template",
                size="1",
                on_change=GovernanceState.pick_template,
                id="eff-template",
            ),
            *_scope_pickers("eff"),
            rx.button(
                rx.icon("gauge", size=13),
                "Show limits",
                size="1",
                on_click=GovernanceState.show_effective,
                id="eff-show",
            ),
            spacing="2",
            wrap="wrap",
        ),
        rx.text_area(
            value=EFF_FORM.spec,
            on_change=lambda v: GovernanceState.set_eff("spec", v),
            rows="7",
            width="100%",
            class_name="mono",
            id="eff-spec",
        ),
        error_callout(GovernanceState.eff_error, "eff-error"),
        rx.cond(
            GovernanceState.eff_ran,
            rx.vstack(
                rx.foreach(GovernanceState.eff_tasks, _effective_task), spacing="4", width="100%", id="eff-result"
            ),
        ),
        spacing="3",
        width="100%",
        card_id="effective-caps",
    )
    return card


def _caps() -> rx.Component:
    heads = ["Cap", "Applies to", "Kind", "Limit", "Usage now", "Enforced at", "Last refusals", "On"]
    section: rx.Component = rx.vstack(
        rx.hstack(
            rx.text(
                "Limits by scope, with live usage; a full concurrency cap keeps tasks queued.",
                size="2",
                color_scheme="gray",
            ),
            rx.spacer(),
            rx.cond(
                GovernanceState.can_edit,
                rx.button(
                    rx.icon("plus", size=14),
                    "Add cap",
                    size="1",
                    variant="soft",
                    on_click=GovernanceState.open_cap(""),
                    id="add-cap",
                ),
            ),
            width="100%",
            align="center",
        ),
        _surface_table(
            (*heads, rx.cond(GovernanceState.can_edit, rx.table.column_header_cell(""))),
            rx.foreach(GovernanceState.caps, _cap_row),
            "caps-table",
        ),
        _cap_dialog(),
        _effective_panel(),
        spacing="3",
        width="100%",
    )
    return section


def _ownership() -> rx.Component:
    heads = ["Pool", "Project", "Environment", "Engine", "Owner", "Escalation", "From rule"]

    def row(o: Any) -> rx.Component:
        tr: rx.Component = body_row(
            rx.table.cell(rx.badge(o.pool, variant="outline", color_scheme="gray")),
            *(text_cell(v, size="2") for v in (o.project, o.environment, o.engine)),
            text_cell(o.owner, size="2", weight="medium"),
            text_cell(o.escalation, size="1", color_scheme="gray"),
            text_cell(o.rule, size="1", class_name="mono"),
        )
        return tr

    table: rx.Component = rx.vstack(
        rx.text(
            "Who is alerted first for which work (alert escalation follows the matching rule).",
            size="2",
            color_scheme="gray",
        ),
        _surface_table(heads, rx.foreach(GovernanceState.owners, row), "owners-table"),
        spacing="3",
        width="100%",
    )
    return table


def _export_link(label: str, element_id: str | None = None, **button_props: Any) -> rx.Component:
    """A button downloading the live configuration as a bundle; ``button_props`` go to the button."""
    link: rx.Component = rx.link(
        rx.button(rx.icon("download", size=13), label, size="1", **button_props),
        href=GovernanceState.export_href,
        is_external=True,
        id=element_id,
    )
    return link


def _callout_while(
    shown: Any, message: rx.Component, icon: str, color: str, element_id: str, **props: Any
) -> rx.Component:
    """A small callout shown while ``shown`` holds; ``props`` go to the callout."""
    box: rx.Component = rx.cond(
        shown, rx.callout(message, icon=icon, color_scheme=color, size="1", id=element_id, **props)
    )
    return box


def _drift_banner() -> rx.Component:
    """Above the tabs: that the configuration is locked to the bundle, and how it drifted from it."""
    locked = rx.text(
        "Locked to the bundle: edits here are refused. Change it at ",
        GovernanceState.bundle_location,
        " and deploy.",
    )
    summary = rx.text(
        "The live configuration differs from the bundle deployed ",
        GovernanceState.deployed_label,
        ": ",
        GovernanceState.drift_lines.length(),
        " change(s).",
        weight="medium",
    )
    drift = rx.vstack(
        rx.hstack(
            summary, rx.spacer(), _export_link("Export as bundle", "export-bundle"), width="100%", align="center"
        ),
        _small_lines(GovernanceState.drift_lines),
        spacing="1",
        width="100%",
    )
    banner: rx.Component = rx.vstack(
        _callout_while(GovernanceState.bundle_only, locked, "lock", "gray", "bundle-only"),
        _callout_while(GovernanceState.has_drift, drift, "git-compare", "amber", "drift-banner", width="100%"),
        width="100%",
        spacing="2",
    )
    return banner


def _drift_tab() -> rx.Component:
    tab: rx.Component = rx.vstack(
        rx.text(
            rx.cond(
                GovernanceState.deployed_label != "",
                rx.text("Last bundle deploy: ", GovernanceState.deployed_label, as_="span"),
                rx.text("No bundle deploy recorded yet (`lakehouse bundle deploy`).", as_="span"),
            ),
            size="2",
        ),
        rx.cond(
            GovernanceState.has_drift,
            rx.box(_small_lines(GovernanceState.drift_lines), id="drift-lines"),
            rx.text(
                "No drift: the live configuration matches the deployed bundle.",
                size="2",
                color_scheme="grass",
                id="no-drift",
            ),
        ),
        _export_link("Export as bundle (zip)", variant="soft"),
        rx.text(
            "`lakehouse bundle plan` on your repository shows these edits; `lakehouse governance drift` lists them.",
            size="1",
            color_scheme="gray",
        ),
        spacing="3",
        align="start",
    )
    return tab


@layout(route=routes.GOVERNANCE, title="Routing & caps", on_load=GovernanceState.load)
def governance_page() -> rx.Component:
    """Drift banner, then tabs: the routing matrix with its simulator, caps, ownership, drift."""
    page: rx.Component = rx.vstack(
        live_intro(
            rx.text("Where work runs and how much of it may: org admins edit, everyone else reads.", size="2",
                    color_scheme="gray"),
            GovernanceState.updated_at,
            GovernanceState.is_loading,
        ),
        error_callout(GovernanceState.error, icon="ban", size="2"),
        _drift_banner(),
        rx.tabs.root(
            rx.tabs.list(
                rx.tabs.trigger("Routing matrix", value="routing", id="tab-routing"),
                rx.tabs.trigger("Caps", value="caps", id="tab-caps"),
                rx.tabs.trigger("Ownership", value="ownership", id="tab-ownership"),
                rx.tabs.trigger("Drift", value="drift", id="tab-drift"),
            ),
            rx.tabs.content(
                rx.vstack(_matrix(), _simulator(), spacing="4", width="100%", padding_top="16px"),
                value="routing",
            ),
            rx.tabs.content(rx.box(_caps(), padding_top="16px"), value="caps"),
            rx.tabs.content(rx.box(_ownership(), padding_top="16px"), value="ownership"),
            rx.tabs.content(rx.box(_drift_tab(), padding_top="16px"), value="drift"),
            default_value="routing",
            width="100%",
        ),
        _review_dialog(),
        live_ticker(REFRESH_MS, GovernanceState.refresh),
        spacing="4",
        width="100%",
    )
    return page
