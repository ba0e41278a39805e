"""Access policies page: the org's policies, groups and audit; an editor for grants, row filters and masks
(on a dataset by name, a schema or a tag) and the simulator. Writes are checked in SQL (org admins, and
dataset owners for their datasets' policies)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room.services import access_policies, policy_previews
from control_room.services.governance import resolve_org
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import handler, setter
from control_room.state.rows import AuditRow, PolicyRow


def policy_row(row: dict[str, Any]) -> PolicyRow:
    what = row["privilege"] or row["row_filter"] or " ".join(x for x in (row["mask_kind"], row["mask_column"]) if x)
    return PolicyRow(
        name=row["name"], kind=row["kind"].replace("_", " "),
        target=f"{row['target_kind']} {row['dataset_name'] or row['target']}",
        who=f"{row['principal_kind'].replace('_', ' ')} {row['principal']}".strip(), what=what,
    )  # fmt: skip


def audit_row(row: dict[str, Any]) -> AuditRow:
    if row["entity"] == "access_refusals":
        detail = row["detail"]
        what = f"refused {detail['privilege']} on {row['name']} ({detail['policy']}) in run {str(detail['run_id'])[:8]}"
        return AuditRow(f"{row['at']:%Y-%m-%d %H:%M}", str(row["actor"]), what, True)
    if row["entity"] == "policy_previews":
        detail = row["detail"]
        what = f"previewed {row['name']} as {str(detail['principal_kind']).replace('_', ' ')} {detail['principal']}"
        return AuditRow(f"{row['at']:%Y-%m-%d %H:%M}", str(row["actor"]), what)
    what = f"{row['action']} {row['entity'].replace('_', ' ')} {row['name'] or ''}".strip()
    return AuditRow(f"{row['at']:%Y-%m-%d %H:%M}", str(row["actor"]), what)


class PoliciesState(SessionState):
    """Lists, the editor's draft and the simulator's question and answer."""

    policies: rx.Field[list[PolicyRow]] = rx.field(default_factory=list)
    groups: rx.Field[list[str]] = rx.field(default_factory=list)
    audit_rows: rx.Field[list[AuditRow]] = rx.field(default_factory=list)
    error: rx.Field[str] = rx.field("")
    notice: rx.Field[str] = rx.field("")
    draft: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    group_name: rx.Field[str] = rx.field("")
    group_members: rx.Field[str] = rx.field("")
    question: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    verdict: rx.Field[str] = rx.field("")
    verdict_allowed: rx.Field[bool] = rx.field(False)
    # Who may edit: org admins (policies and groups), dataset owners (their datasets' policies); the
    # SQL functions refuse a forged edit anyway.
    can_edit_policies: rx.Field[bool] = rx.field(False)
    can_edit_groups: rx.Field[bool] = rx.field(False)
    # The live preview: "as principal X, this query returns…" (a run acting as X, polled to its rows).
    preview: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    preview_running: rx.Field[bool] = rx.field(False)
    preview_status: rx.Field[str] = rx.field("")
    preview_error: rx.Field[str] = rx.field("")
    preview_columns: rx.Field[list[str]] = rx.field(default_factory=list)
    preview_rows: rx.Field[list[list[str]]] = rx.field(default_factory=list)

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        error, rows, groups, trail = "", [], [], []
        rights = access_policies.EditorRights(org_admin=False, owns_datasets=False)
        try:
            async with as_user(signed.principal) as conn:
                org_id = await resolve_org(conn, None)
                rows = await access_policies.list_policies(conn, org_id=org_id)
                groups = await access_policies.list_groups(conn, org_id=org_id)
                trail = await access_policies.audit(conn, org_id=org_id, limit=30)
                rights = await access_policies.editor_rights(conn, org_id=org_id)
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            if error:  # a reload after an action keeps that action's error (its own load found none)
                self.error = error
            self.policies = [policy_row(r) for r in rows]
            self.groups = [f"{g['name']}: {', '.join(m['name'] for m in g['members']) or 'no members'}" for g in groups]
            self.audit_rows = [audit_row(t) for t in trail]
            self.can_edit_policies, self.can_edit_groups = rights.edits_policies, rights.org_admin

    @handler
    def set_draft(self, field: str, value: str) -> None:
        self.draft = {**self.draft, field: value[:4000]}

    @handler
    def set_question(self, field: str, value: str) -> None:
        self.question = {**self.question, field: value[:400]}

    @handler
    def set_preview(self, field: str, value: str) -> None:
        self.preview = {**self.preview, field: value[:20000]}

    set_group_name = setter("group_name", longest=63)
    set_group_members = setter("group_members", longest=4000)

    @signed_in_event
    async def save_group(self, signed: SignedIn) -> Any:
        """Create or replace the group with these members (e-mails, comma-separated)."""
        async with self:
            name, members = self.group_name.strip(), [m.strip() for m in self.group_members.split(",") if m.strip()]

        async def work(conn: AsyncConnection) -> None:
            await access_policies.save_group(
                conn, org_id=await resolve_org(conn, None), name=name, description="",
                members=[{"kind": "user", "name": m} for m in members],
            )  # fmt: skip

        return await self._change(signed, work, f"Saved group {name}.")

    @signed_in_event
    async def save_policy(self, signed: SignedIn) -> Any:
        """Save the editor's draft as a policy (an existing name is updated)."""
        async with self:
            draft = dict(self.draft)
        body = {k: v for k, v in draft.items() if v}
        body.setdefault("target_kind", "dataset")

        async def work(conn: AsyncConnection) -> None:
            org_id = await resolve_org(conn, None)
            if body["target_kind"] == "dataset" and body.get("target"):
                body["target"] = await access_policies.dataset_target(conn, org_id=org_id, dataset=body["target"])
            live = {p["name"]: p["id"] for p in await access_policies.list_policies(conn, org_id=org_id)}
            await access_policies.save_policy(conn, org_id=org_id, body=body, policy_id=live.get(body.get("name")))

        return await self._change(signed, work, f"Saved policy {body.get('name', '')}.")

    async def _change(self, signed: SignedIn, work: Callable[[AsyncConnection], Awaitable[None]], done: str) -> Any:
        """``work`` as the user in one transaction; then ``done`` or what failed, and the page read again."""
        changed = await self._read_as(signed, lambda conn, _: work(conn), needs_project=False)
        async with self:
            self.notice, self.error = ("" if changed.error else done), changed.error
        return PoliciesState.load

    @signed_in_event
    async def simulate(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Ask: can this group/user read (the column of) the dataset, and why?"""
        if signed.project_id is None:
            return
        async with self:
            question = dict(self.question)
        kind = question.get("kind") or "group"
        try:
            async with as_user(signed.principal) as conn:
                verdict = await access_policies.simulate(
                    conn, project_id=signed.project_id, principal_kind="user" if kind == "user" else "group",
                    principal=question.get("principal", ""), dataset=question.get("dataset", ""),
                    privilege=question.get("privilege") or "read", column=question.get("column") or None,
                )  # fmt: skip
            text, allowed = f"{'Allowed' if verdict.allowed else 'Denied'}: {verdict.reason}", verdict.allowed
        except Exception as exc:
            text, allowed = problem_text(exc), False
        async with self:
            self.verdict, self.verdict_allowed = text, allowed
        yield None

    @signed_in_event
    async def run_preview(self, signed: SignedIn) -> AsyncIterator[Any]:
        """Run the query as the principal (a preview run through the agent's guard) and poll it to its rows."""
        async with self:
            if self.preview_running:
                return
            ask = dict(self.preview)
            self.preview_running, self.preview_error, self.preview_status = True, "", "submitting"
            self.preview_columns, self.preview_rows = [], []
        kind = ask.get("kind") or "group"
        try:
            async with as_user(signed.principal) as conn:
                started = await policy_previews.start_preview(
                    conn, org_id=await resolve_org(conn, None), dataset=ask.get("dataset", ""),
                    principal_kind=kind,  # type: ignore[arg-type]  # the select offers the three kinds
                    principal=ask.get("principal", ""), sql=ask.get("sql") or None, environment="dev",
                    requested_by=signed.principal.user_id, requested_by_name=signed.principal.email,
                )  # fmt: skip
            deadline = time.monotonic() + PREVIEW_DEADLINE_S
            while True:
                async with as_user(signed.principal) as conn:
                    result = await policy_previews.preview_result(conn, run_id=started.run_id)
                async with self:
                    self.preview_status = f"run {str(result.run_id)[:8]} {result.status}"
                if result.done or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)  # the agent runs it: poll the run, up to the deadline
            error = result.error or ("" if result.done else f"still {result.status} after {PREVIEW_DEADLINE_S} s")
            columns = [c["name"] for c in result.columns]
            rows = [[_cell_text(v) for v in row] for row in result.rows]
            status = (
                f"{len(rows)} of {result.total_rows} rows as {result.principal_kind.replace('_', ' ')} "
                f"{result.principal} (run {str(result.run_id)[:8]})"
                if result.status == "succeeded" else f"run {str(result.run_id)[:8]} {result.status}"
            )  # fmt: skip
        except Exception as exc:
            error, columns, rows, status = problem_text(exc), [], [], ""
        async with self:
            self.preview_running, self.preview_error, self.preview_status = False, error, status
            self.preview_columns, self.preview_rows = columns, rows
        yield PoliciesState.load


PREVIEW_DEADLINE_S = 120


def _cell_text(value: Any) -> str:
    if value is None:
        return "NULL"
    return value if isinstance(value, str) else json.dumps(value)
