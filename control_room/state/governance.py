"""The Routing & caps page: the routing matrix as a draft (reorder, inline edit, add, duplicate, disable,
delete) with live warnings, applied in one audited transaction after a diff and re-routing preview; the
simulator; caps with live usage and their editor; ownership; drift against the last deployed bundle.

Everything the page shows is read as the signed-in user; edits are checked again in SQL (org admins).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import reflex as rx
import yaml

from control_room import routes
from control_room.db.connection import connect, database_url
from control_room.services import caps, governance, routing
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, setter
from control_room.state.rows import (
    CapRow,
    EffectiveForm,
    LimitRow,
    OwnerRow,
    RefusalRow,
    RuleRow,
    SimForm,
    SimResult,
    TaskLimitsRow,
    VerdictRow,
    with_field,
)

REFRESH_MS = 5000
RECENT_SHOWN = 3  # refusals listed beside each cap (the API and CLI give 5)
EXAMPLE_SPEC = """tasks:
  - key: report
    engine: duckdb
    sql: select 1
    timeout_s: 600
"""
# Of a cap: the fields its table row shows as the service gives them (the row's other fields are worded here).
CAP_SHOWN_AS_IS = ("id", "name", "scope", "target", "project", "environment", "pool", "engine", "kind", "limit",
                   "enabled", "layer", "used_label", "percent")  # fmt: skip
LIST_FIELDS = ("labels", "tags", "required_labels", "escalation")  # of a rule: lists, ", "-joined in its row
TRIMMED_FIELDS = ("name", "engine", "pool", "owner")  # of a rule, typed in the editor: spaces around dropped
EDIT_FIELDS = (
    "name",
    "project",
    "environment",
    "engine",
    "labels",
    "tags",
    "pool",
    "required_labels",
    "owner",
    "escalation",
)


def _joined(values: list[str]) -> str:
    return ", ".join(values)


def _project_label(project: str) -> str:
    return "a project you cannot see" if project.startswith(routing.HIDDEN) else project


def rule_row(rule: routing.RuleDraft, key: str) -> RuleRow:
    """The table row of a draft rule."""
    match = [f"project {_project_label(rule.project)}"] if rule.project else []
    match += [f"{n} {getattr(rule, n)}" for n in ("environment", "engine") if getattr(rule, n)]
    match += [f"label {v}" for v in rule.labels] + [f"tag {v}" for v in rule.tags]
    values: dict[str, Any] = {n: _joined(v) if n in LIST_FIELDS else v for n, v in _draft_values(rule).items()}
    return RuleRow(key=key, match=match or ["any task"], **values)


def plain_row(row: RuleRow, **changes: Any) -> RuleRow:
    """A new row with plain values (rows read from the state are proxies; their copies must not be)."""
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(RuleRow)}
    values = {k: list(v) if isinstance(v, list) else v for k, v in values.items()}
    return RuleRow(**{**values, **changes})


def rule_draft(row: RuleRow) -> routing.RuleDraft:
    """The draft rule of a table row."""
    values = _draft_values(row)
    values.update({name: routing.parse_list(values[name]) for name in LIST_FIELDS})
    values.update({name: values[name].strip() for name in TRIMMED_FIELDS})
    return routing.RuleDraft(**values)


def _draft_values(rule: routing.RuleDraft | RuleRow) -> dict[str, Any]:
    """The values of a rule's draft fields (a table row has them all, under the same names)."""
    return {f.name: getattr(rule, f.name) for f in dataclasses.fields(routing.RuleDraft)}


def cap_row(cap: caps.CapView, tightest: bool = False) -> CapRow:
    """The table row of a cap."""
    refusals = f"{cap.refusals_7d} in 7 days" + (f" (last {cap.last_refusal_day})" if cap.last_refusal_day else "")
    return CapRow(
        **{name: getattr(cap, name) for name in CAP_SHOWN_AS_IS},
        limit_label=f"{cap.limit:,} {caps.UNIT[cap.kind]}",
        has_usage=cap.used is not None,
        waiting_reason=f"{cap.waiting} queued: {cap.waiting_reason}" if cap.waiting_reason else "",
        refusals=refusals if cap.refusals_7d else ("" if cap.recent else "none"),
        recent=[refusal_row(r) for r in cap.recent[:RECENT_SHOWN]],
        tightest=tightest,
    )


def refusal_row(refusal: caps.Refusal) -> RefusalRow:
    """A refusal as the caps table lists it: when (a hold: until when), the layer, the run and task (linked;
    a refused submit made no run: the name it would have had and who submitted it), and what happened."""
    when = refusal.at.astimezone(UTC).strftime("%m-%d %H:%M")
    if refusal.layer == "claim" and refusal.ended_at is not None:
        when += refusal.ended_at.astimezone(UTC).strftime(" to %H:%M")
    if not refusal.run_id:
        by = f" by {refusal.principal}" if refusal.principal else ""
        times = f" ({refusal.repeats} times)" if refusal.repeats > 1 else ""
        return RefusalRow(
            when=when, layer=refusal.layer, run_href="", message=refusal.message,
            run_label=f"{refusal.run_name} in {refusal.project}/{refusal.environment}{by}{times}",
        )  # fmt: skip
    return RefusalRow(
        when=when,
        layer=refusal.layer,
        run_href=routes.run_detail(refusal.run_id, task=refusal.task_key, attempt=refusal.attempt),
        run_label=f"{refusal.run_name} · {refusal.task_key}",
        message=refusal.message,
    )


def task_limits_row(task: caps.TaskLimits) -> TaskLimitsRow:
    """A task of the effective-caps panel."""
    return TaskLimitsRow(
        key=task.key,
        engine=task.engine,
        pool=task.pool,
        rule=task.rule,
        limits=[
            LimitRow(
                kind=x.kind,
                limit_label=f"{x.limit:,} {caps.UNIT[x.kind]}",
                source=x.source,
                target=x.target,
                layer=x.layer,
                used_label=x.cap.used_label if x.cap else "",
                tightest=x.tightest,
            )
            for x in task.limits
        ],
    )


def owner_rows(rules: list[routing.RuleDraft]) -> list[OwnerRow]:
    """Who owns which pool, project, environment and engine (the enabled rules' owners, in order)."""
    return [
        OwnerRow(
            pool=r.pool,
            project=_project_label(r.project) or "any",
            environment=r.environment or "any",
            engine=r.engine or "any",
            owner=r.owner or "(nobody)",
            escalation=" → ".join(r.escalation) or "-",
            rule=r.name,
        )
        for r in rules
        if r.enabled
    ]


def _read_drift(slug: str) -> governance.Drift:
    # The bundle code reads on a synchronous connection; membership was checked as the user first.
    with connect(database_url()) as conn:
        return governance.drift(conn, org=slug)


class GovernanceState(SessionState):
    """The Routing & caps page."""

    loaded: rx.Field[bool] = rx.field(False)
    is_loading: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    org: rx.Field[str] = rx.field("")
    can_edit: rx.Field[bool] = rx.field(False)
    rules: rx.Field[list[RuleRow]] = rx.field(default_factory=list)
    matrix_warnings: rx.Field[list[str]] = rx.field(default_factory=list)
    warning_count: rx.Field[int] = rx.field(0)
    dirty: rx.Field[bool] = rx.field(False)
    change_count: rx.Field[int] = rx.field(0)
    editing: rx.Field[str] = rx.field("")  # key of the row in inline edit
    dragging: rx.Field[str] = rx.field("")  # key of the row being dragged
    drag_over: rx.Field[str] = rx.field("")  # key of the row it would land on
    edit: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    edit_error: rx.Field[str] = rx.field("")
    review_open: rx.Field[bool] = rx.field(False)
    diff_lines: rx.Field[list[str]] = rx.field(default_factory=list)
    reroute_lines: rx.Field[list[str]] = rx.field(default_factory=list)
    is_applying: rx.Field[bool] = rx.field(False)
    projects_in_org: rx.Field[list[str]] = rx.field(default_factory=list)
    # Simulator
    sim_form: rx.Field[SimForm] = rx.field(default_factory=SimForm)
    sim: rx.Field[SimResult] = rx.field(default_factory=SimResult)
    # Caps
    caps: rx.Field[list[CapRow]] = rx.field(default_factory=list)
    cap_open: rx.Field[bool] = rx.field(False)
    cap_form: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    cap_error: rx.Field[str] = rx.field("")
    # Effective caps for a spec
    eff_form: rx.Field[EffectiveForm] = rx.field(default_factory=lambda: EffectiveForm(spec=EXAMPLE_SPEC))
    eff_templates: rx.Field[list[str]] = rx.field(default_factory=list)
    eff_tasks: rx.Field[list[TaskLimitsRow]] = rx.field(default_factory=list)
    eff_error: rx.Field[str] = rx.field("")
    eff_ran: rx.Field[bool] = rx.field(False)
    # Ownership and drift
    owners: rx.Field[list[OwnerRow]] = rx.field(default_factory=list)
    has_drift: rx.Field[bool] = rx.field(False)
    drift_lines: rx.Field[list[str]] = rx.field(default_factory=list)
    deployed_label: rx.Field[str] = rx.field("")
    bundle_only: rx.Field[bool] = rx.field(False)
    bundle_location: rx.Field[str] = rx.field("")

    _org_id: str = ""
    _templates: dict[str, tuple[str, dict[str, Any]]] = {}  # "project/name" -> (project, spec)
    _matrix: routing.Matrix | None = None
    _fingerprint: str = ""

    @rx.var
    def drag_from_index(self) -> int:
        """Where the dragged rule is now (-1 when none is dragged): a drop below it lands under the target."""
        return next((i for i, r in enumerate(self.rules) if r.key == self.dragging), -1) if self.dragging else -1

    @rx.var
    def export_href(self) -> str:
        """The bundle zip of the live configuration (a GET the session cookie opens)."""
        return f"{routes.API_V1}/governance/bundle.zip?org={self.org}" if self.org else ""

    # Loading ------------------------------------------------------------------------------------------

    @signed_in_event
    @exclusive("is_loading")
    async def load(self, signed: SignedIn) -> None:
        """Everything the page shows: the matrix (keeping an unapplied draft), caps, drift."""
        try:
            if signed.project_id is None:
                raise PermissionError("You are not a member of any project yet: ask an admin for a role.")
            async with as_user(signed.principal) as conn:
                org_id = await routing.org_of_project(conn, project_id=signed.project_id)
                matrix = await routing.load_matrix(conn, org_id=org_id)
                cap_views = await caps.list_caps(conn, org_id=org_id)
                can_edit = await governance.is_org_admin(conn, org_id=org_id)
                templates = await caps.template_specs(conn, org_id=org_id)
            drift = await asyncio.to_thread(_read_drift, matrix.org)
        except Exception as exc:
            async with self:
                self.error = str(exc) if isinstance(exc, PermissionError) else problem_text(exc)
                self.loaded = True
            return
        async with self:
            self.error = ""
            self._org_id, self.org, self.can_edit = str(org_id), matrix.org, can_edit
            self.projects_in_org = sorted(matrix.projects)
            first_project = min(matrix.projects, default="")
            if not self.sim_form.project:
                self.sim_form = with_field(self.sim_form, "project", first_project)
            if not self.eff_form.project:
                self.eff_form = with_field(self.eff_form, "project", first_project)
            self._templates = {f"{slug}/{name}": (slug, spec) for slug, name, spec in templates}
            self.eff_templates = list(self._templates)
            self._matrix = matrix
            if not self.dirty:  # an unapplied draft is kept; its apply then names a matrix changed meanwhile
                self._reset_draft(matrix)
                self._fingerprint = matrix.fingerprint
            self._recheck()
            self.caps = [cap_row(c) for c in cap_views]
            self.has_drift, self.drift_lines = drift.has_drift, drift.lines()
            self.deployed_label = (
                f"{drift.deployed_at:%Y-%m-%d %H:%M} UTC by {drift.deployed_by}" if drift.deployed_at else ""
            )
            self.bundle_only, self.bundle_location = drift.bundle_only, drift.bundle_location
            self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")
            self.loaded = True

    def _reset_draft(self, matrix: routing.Matrix) -> None:
        self.rules = [rule_row(r, r.id) for r in matrix.rules]
        self.dirty, self.editing, self.edit_error = False, "", ""

    def _drafts(self) -> list[routing.RuleDraft]:
        return [rule_draft(r) for r in self.rules]

    def _recheck(self) -> None:
        """Warnings, change marks and ownership of the draft (pure Python: no I/O under the lock)."""
        if self._matrix is None:
            return
        drafts = self._drafts()
        found = routing.warnings(self._matrix, drafts)
        live = {r.id: r.content() for r in self._matrix.rules}
        numbered = routing.renumber(drafts)
        rows = []
        for index, row in enumerate(self.rules):
            mine = [w.message for w in found if w.rule == index]
            changed = not row.id or live.get(row.id) != numbered[index].content()
            rows.append(plain_row(row, warnings=mine, changed=changed))
        self.rules = rows
        self.matrix_warnings = [w.message for w in found if w.rule < 0]
        self.warning_count = len(found)
        self.change_count = len(routing.diff(self._matrix.rules, numbered))
        self.dirty = self.change_count > 0
        self.owners = owner_rows(drafts)

    # Draft edits -------------------------------------------------------------------------------------

    def _index(self, key: str) -> int:
        return next((i for i, r in enumerate(self.rules) if r.key == key), -1)

    def _place(self, index: int, target: int) -> None:
        """Take the rule at ``index`` out and put it at ``target``: it takes that rule's place, the rules
        between shift by one (a move down lands below the target, a move up above it)."""
        if index < 0 or not 0 <= target < len(self.rules) or index == target:
            return
        rows = [plain_row(r) for r in self.rules]
        rows.insert(target, rows.pop(index))
        self.rules = rows
        self._recheck()

    @handler
    def move(self, key: str, step: int) -> None:
        """Move a rule up (-1) or down (+1) in priority (the keyboard's way to reorder)."""
        index = self._index(key)
        self._place(index, index + step)

    @handler
    def drag_start(self, key: str) -> None:
        """A rule's row is being dragged (its place is decided on drop)."""
        self.dragging, self.drag_over = key, ""

    @handler
    def drag_enter(self, key: str) -> None:
        """The dragged row is over this rule's row: mark where it would land."""
        if self.dragging and key != self.dragging:
            self.drag_over = key

    @handler
    def drop_on(self, key: str) -> None:
        """The dragged rule takes the place of the rule it was dropped on (still a draft until Apply)."""
        dragging = self.dragging
        self.dragging, self.drag_over = "", ""
        if dragging and dragging != key and self.editing == "":
            self._place(self._index(dragging), self._index(key))

    @handler
    def drag_end(self) -> None:
        """The drag ended (dropped, or cancelled with Escape or outside the table)."""
        self.dragging, self.drag_over = "", ""

    @handler
    def toggle_enabled(self, key: str) -> None:
        """Disable or enable a rule in the draft."""
        self.rules = [plain_row(r, enabled=not r.enabled) if r.key == key else plain_row(r) for r in self.rules]
        self._recheck()

    @handler
    def duplicate(self, key: str) -> None:
        """A copy right below, named "<name>-copy", not applied yet."""
        index = self._index(key)
        if index < 0:
            return
        source = self.rules[index]
        names = {r.name for r in self.rules}
        name = f"{source.name}-copy"
        while name in names:
            name += "-copy"
        rows = [plain_row(r) for r in self.rules]
        copy = plain_row(source, key=uuid.uuid4().hex, id="", name=name)
        self.rules = [*rows[: index + 1], copy, *rows[index + 1 :]]
        self._recheck()

    @handler
    def remove(self, key: str) -> None:
        """Delete a rule from the draft."""
        self.rules = [plain_row(r) for r in self.rules if r.key != key]
        if self.editing == key:
            self.editing = ""
        self._recheck()

    @handler
    def add_rule(self) -> None:
        """A new rule at the top of the matrix, opened for editing."""
        row = RuleRow(key=uuid.uuid4().hex, name="new-rule", pool=routing.DEFAULT_POOL)
        self.rules = [row, *(plain_row(r) for r in self.rules)]
        self._recheck()
        self._open_editor(row.key)

    @handler
    def start_edit(self, key: str) -> None:
        """Edit a rule's cells in place."""
        self._open_editor(key)

    def _open_editor(self, key: str) -> None:
        row = self.rules[self._index(key)]
        self.editing, self.edit_error = key, ""
        self.edit = {name: str(getattr(row, name)) for name in EDIT_FIELDS}

    @handler
    def set_edit(self, name: str, value: str) -> None:
        self.edit = {**self.edit, name: "" if value == "any" else value}

    @handler
    def cancel_edit(self) -> None:
        self.editing, self.edit_error = "", ""

    @handler
    def finish_edit(self) -> None:
        """Keep the edited cells when the bundle's checks accept them (the problem is shown otherwise)."""
        index = self._index(self.editing)
        if index < 0:
            return
        row = plain_row(self.rules[index], **{name: str(self.edit.get(name, "")) for name in EDIT_FIELDS})
        problems = routing.validation_problems([rule_draft(row)], self.projects_in_org)
        names = [r.name for i, r in enumerate(self.rules) if i != index]
        if row.name.strip() in names:
            self.edit_error = f'another rule is named "{row.name.strip()}"'
            return
        if problems:
            self.edit_error = problems[0].message
            return
        fresh = rule_row(rule_draft(row), row.key)
        rows = [plain_row(r) for r in self.rules]
        self.rules = [*rows[:index], fresh, *rows[index + 1 :]]
        self.editing, self.edit_error = "", ""
        self._recheck()

    @handler
    def discard(self) -> None:
        """Throw the draft away: back to the live matrix."""
        if self._matrix is not None:
            self._reset_draft(self._matrix)
            self._recheck()

    # Review and apply --------------------------------------------------------------------------------

    @background
    async def review(self) -> AsyncIterator[Any]:
        """The diff and the queued tasks the draft would move, shown before applying."""
        async with self:
            matrix, drafts = self._matrix, routing.renumber(self._drafts())
        if matrix is None:
            return
        found = await self._read_as_user(
            lambda conn, _: routing.queued_tasks(conn, org_id=matrix.org_id, projects=matrix.projects),
            needs_project=False,
        )
        if found.value is None:
            yield found.toast()
            return
        moves = routing.reroute_preview(found.value, drafts)
        async with self:
            self.diff_lines = [c.describe() for c in routing.diff(matrix.rules, drafts)]
            self.reroute_lines = [f"{n} queued task(s): pool {a} → {b}" for (a, b), n in sorted(moves.items())] or [
                "No queued task changes pool."
            ]
            self.review_open = True

    set_review_open = setter("review_open")

    @signed_in_event
    async def apply(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Apply the draft in one transaction (org admins; refused and explained otherwise)."""
        async with self:
            matrix, drafts, fingerprint = self._matrix, self._drafts(), self._fingerprint
            self.is_applying = True
        if matrix is None:
            return
        try:
            async with as_user(signed.principal) as conn:
                result = await routing.apply(
                    conn, matrix=matrix, draft=drafts, fingerprint=fingerprint, by=signed.principal.email
                )
        except Exception as exc:
            async with self:
                self.is_applying, self.review_open = False, False
            yield rx.toast.error(problem_text(exc))
            return
        async with self:
            self.is_applying, self.review_open, self.dirty = False, False, False
            self._fingerprint = ""
        yield rx.toast.success(
            f"Applied: {result['created']} created, {result['updated']} updated, {result['deleted']} deleted."
        )
        yield GovernanceState.load

    # Simulator ---------------------------------------------------------------------------------------

    @handler
    def set_sim(self, name: str, value: str) -> None:
        self.sim_form = with_field(self.sim_form, name, value)

    @background
    async def simulate(self) -> AsyncIterator[Any]:
        """Where such a task goes under the draft matrix, why earlier rules did not match, and what applies."""
        async with self:
            matrix, drafts, dirty, form = self._matrix, self._drafts(), self.dirty, self.sim_form
            probe = routing.TaskProbe(
                form.project,
                form.environment,
                form.engine.strip(),
                tuple(routing.parse_list(form.labels)),
                tuple(routing.parse_list(form.tags)),
            )
        if matrix is None:
            return
        found = await self._read_as_user(
            lambda conn, _: routing.simulate(conn, matrix=matrix, probe=probe, rules=drafts), needs_project=False
        )
        if found.value is None:
            yield found.toast()
            return
        sim = found.value
        async with self:
            self.sim = SimResult(
                ran=True,
                on_draft=dirty,
                rule=sim.route.rule,
                pool=sim.route.pool,
                labels_required=_joined(list(sim.route.required_labels)),
                verdicts=[
                    VerdictRow(v.name, v.matched, "; ".join(v.reasons) if not v.matched else "matches")
                    for v in sim.route.verdicts
                ],
                executors=[e.name for e in sim.executors],
                caps=[cap_row(c, t) for c, t in sim.caps],
                waits=sim.waits,
            )

    # Caps ----------------------------------------------------------------------------------------------

    @background
    async def refresh(self, _tick: str = "") -> None:
        """Live usage of the caps (and drift) while the page is open."""
        signed = await self.signed_in()
        async with self:
            org_id, org = self._org_id, self.org
        if signed is None or not org_id:
            return
        try:
            async with as_user(signed.principal) as conn:
                cap_views = await caps.list_caps(conn, org_id=uuid.UUID(org_id))
            drift = await asyncio.to_thread(_read_drift, org)
        except Exception:
            return  # the next tick tries again; a lasting problem shows on the next load
        async with self:
            self.caps = [cap_row(c) for c in cap_views]
            self.has_drift, self.drift_lines = drift.has_drift, drift.lines()
            self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")

    @handler
    def open_cap(self, cap_id: str) -> None:
        """The cap editor: a cap's values, or a new concurrency cap on a pool."""
        row = next((c for c in self.caps if c.id == cap_id), None)
        if row is None:
            self.cap_form = {
                "id": "",
                "name": "",
                "scope": "pool",
                "kind": "concurrent_tasks",
                "limit": "1",
                "project": "",
                "environment": "",
                "pool": "default",
                "engine": "",
                "enabled": "true",
            }
        else:
            self.cap_form = {
                "id": row.id,
                "name": row.name,
                "scope": row.scope,
                "kind": row.kind,
                "limit": str(row.limit),
                "project": row.project,
                "environment": row.environment,
                "pool": row.pool,
                "engine": row.engine,
                "enabled": "true" if row.enabled else "false",
            }
        self.cap_error, self.cap_open = "", True

    @handler
    def set_cap_field(self, name: str, value: str) -> None:
        self.cap_form = {**self.cap_form, name: value}

    set_cap_open = setter("cap_open")

    @signed_in_event
    async def save_cap(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Save the cap editor's values (admins; audited in SQL)."""
        async with self:
            form, org_id = dict(self.cap_form), self._org_id
        if not org_id:
            return
        try:
            limit = int(form.get("limit", "").replace(",", "").strip())
        except ValueError:
            async with self:
                self.cap_error = "limit: a whole number, 0 or more"
            return
        draft = caps.CapDraft(
            name=form.get("name", "").strip(),
            scope=form.get("scope", ""),
            kind=form.get("kind", ""),
            limit=limit,
            project=form.get("project", ""),
            environment=form.get("environment", ""),
            pool=form.get("pool", "").strip(),
            engine=form.get("engine", "").strip(),
            enabled=form.get("enabled", "true") == "true",
            id=form.get("id", ""),
        )

        async def work() -> uuid.UUID:
            async with as_user(signed.principal) as conn:
                return await caps.save_cap(conn, org_id=uuid.UUID(org_id), draft=draft, by=signed.principal.email)

        if await self._dialog_sent(work, error="cap_error", dialog="cap_open") is None:
            return
        yield rx.toast.success(f"Saved cap {draft.name}.")
        yield GovernanceState.refresh

    @background
    async def delete_cap(self, cap_id: str) -> AsyncIterator[Any]:
        """Delete a cap (admins; audited in SQL)."""
        done = await self._read_as_user(
            lambda conn, signed: caps.delete_cap(conn, cap_id=uuid.UUID(cap_id), by=signed.principal.email),
            needs_project=False,
        )
        if done.failed:
            yield done.toast()
            return
        async with self:
            self.cap_open = False
        yield GovernanceState.refresh

    # Effective caps for a spec ---------------------------------------------------------------------------

    @handler
    def set_eff(self, name: str, value: str) -> None:
        self.eff_form = with_field(self.eff_form, name, value)

    @handler
    def pick_template(self, value: str) -> None:
        """Fill the panel with a job template's latest spec (and its project)."""
        picked = self._templates.get(value)
        if picked is None:
            return
        spec = yaml.safe_dump(picked[1], sort_keys=False)
        self.eff_form = dataclasses.replace(self.eff_form, template=value, project=picked[0], spec=spec)

    @signed_in_event
    async def show_effective(self, signed: SignedIn) -> None:
        """Which limits apply to each task of the pasted or picked spec, and which is tightest of each kind."""
        async with self:
            org_id, form = self._org_id, self.eff_form
            project, environment, text = form.project, form.environment, form.spec
        if not org_id:
            return
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            async with self:
                self.eff_error, self.eff_ran = f"spec: not YAML or JSON ({exc.__class__.__name__})", False
            return
        try:
            async with as_user(signed.principal) as conn:
                found = await caps.effective_for_spec(
                    conn, org_id=uuid.UUID(org_id), project=project, environment=environment, spec=spec
                )
        except Exception as exc:
            async with self:
                self.eff_error, self.eff_ran = problem_text(exc), False
            return
        async with self:
            self.eff_error, self.eff_ran = "", True
            self.eff_tasks = [task_limits_row(t) for t in found]
