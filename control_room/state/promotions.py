"""Promotions: the project's pipeline (each job's version per environment, pending requests with their checks)
and requests in keyset pages; one request's page with its checks, evidence, decisions and Approve/Reject for
those who may (the SQL decides; the page only hides what would be refused)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import reflex as rx

from control_room import routes
from control_room.services import promotions
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, page_tail, setter
from control_room.state.paging import KeysetPages
from control_room.state.rows import (
    CheckRow,
    DecisionRow,
    EvidenceRow,
    PipelineRow,
    PromotionView,
    RequestRow,
    StageCell,
)

PAGE_SIZE = 25
STATUS_TONE = {"pending": "amber", "promoted": "green", "rejected": "red", "cancelled": "gray", "superseded": "gray"}


def _ticks(checks: list[dict[str, Any]]) -> str:
    return " ".join("✓" if c["passed"] else "✗" for c in checks)


def pipeline_row(job: dict[str, Any]) -> PipelineRow:
    cells = []
    for env in promotions.ENVIRONMENTS:
        cell = job["environments"].get(env)
        if cell is None:
            continue
        label = tone = ticks = ""
        if cell["request_id"]:
            passed = sum(1 for c in cell["request_checks"] if c["passed"])
            label = (f"v{cell['request_version']} waiting · checks {passed}/{len(cell['request_checks'])} · "
                     f"approvals {cell['request_approvals']}/{cell['request_required_approvals']}")  # fmt: skip
            if cell.get("request_kind") == "rollback":
                label = (f"rollback to v{cell['request_version']} waiting · approvals "
                         f"{cell['request_approvals']}/{cell['request_required_approvals']}")  # fmt: skip
            tone = "green" if cell["request_checks_passed"] else "amber"
            ticks = _ticks(cell["request_checks"])
        cells.append(StageCell(
            environment=env, version=f"v{cell['runs']}" if cell["runs"] else "—",
            gate=cell["gate"] or "", request_id=str(cell["request_id"] or ""), request_label=label,
            request_tone=tone or "gray", ticks=ticks,
        ))  # fmt: skip
    return PipelineRow(job=job["job"], template_id=str(job["template_id"]), latest=f"v{job['latest']}", cells=cells)


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at else ""


def _route(row: dict[str, Any]) -> str:
    if row.get("kind") == "rollback":
        return f"rollback in {row['to_environment']}"
    return f"{row['from_environment']} → {row['to_environment']}"


def request_row(row: dict[str, Any]) -> RequestRow:
    passed = sum(1 for c in row["checks"] if c["passed"])
    return RequestRow(
        id=str(row["id"]), job=row["job"], version=f"v{row['version']}",
        route=_route(row), status=row["status"],
        tone=STATUS_TONE.get(row["status"], "gray"), checks=f"{passed}/{len(row['checks'])}",
        approvals=f"{row['approvals']}/{row['required_approvals']}", requested_by=row["requested_by"],
        created_at=_when(row["created_at"]),
    )  # fmt: skip


def _evidence_href(link: dict[str, Any]) -> str:
    kind, value = link["kind"], str(link["id"] or "")
    if kind == "run":
        return routes.run_detail(value)
    if kind == "incident":
        return f"{routes.ALERTS}?incident={value}"
    if kind == "url":
        return value
    return ""


def check_row(check: dict[str, Any]) -> CheckRow:
    return CheckRow(
        name=check["name"], label=check["label"], passed=bool(check["passed"]), summary=check["summary"],
        evidence=[EvidenceRow(e["label"], _evidence_href(e)) for e in check["evidence"]],
    )  # fmt: skip


def promotion_view(request: dict[str, Any], refusal: str | None) -> PromotionView:
    """One request as its page shows it; ``refusal`` says why the caller may not decide (None: they may)."""
    approvers = ", ".join(request["gate"].get("approvers") or []) or "project admins"
    return PromotionView(
        title=f"{request['job']} v{request['version']}: {_route(request)}",
        status=request["status"],
        tone=STATUS_TONE.get(request["status"], "gray"),
        facts=[
            ("Gate", request["gate_name"]),
            ("Requested by", f"{request['requested_by']} · {_when(request['created_at'])}"),
            ("Approvals", f"{request['approvals']} of {request['required_approvals']} (approvers: {approvers})"),
            ("Evaluated", _when(request["evaluated_at"]) or "—"),
            ("Comment", request["comment"] or "—"),
        ],
        checks=[check_row(c) for c in request["checks"]],
        decisions=[
            DecisionRow(d["decision"], d["actor"], d["comment"], _when(d["created_at"]),
                        "expired: the evidence changed" if d["decision"] == "approve" and not d["in_force"] else "")
            for d in request["decisions"]
        ],
        outcome=request["outcome"] or "",
        may_decide=refusal is None,
        refusal=refusal or "",
        job_href=routes.job_detail(str(request["template_id"])),
    )  # fmt: skip


class PromotionsState(KeysetPages, SessionState):
    """The pipeline and the requests list of the current project (live while open)."""

    pipeline: rx.Field[list[PipelineRow]] = rx.field(default_factory=list)
    requests: rx.Field[list[RequestRow]] = rx.field(default_factory=list)
    status: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    updated_at: rx.Field[str] = rx.field("")
    is_loading: rx.Field[bool] = rx.field(False)

    def _reload(self) -> Any:
        return PromotionsState.load

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        async with self:
            self._reset_pages()
        yield PromotionsState.load

    @signed_in_event
    @exclusive("is_loading")
    async def load(self, signed: SignedIn) -> None:
        async with self:
            cursor, status = self._page_cursor(), self.status
        pipeline: list[PipelineRow] = []
        rows: list[RequestRow] = []
        next_cursor: str | None = None
        error = ""
        if signed.project_id is None:
            error = "You are not a member of any project yet: ask an admin for a role."
        else:
            try:
                async with as_user(signed.principal) as conn:
                    pipeline = [pipeline_row(j) for j in await promotions.pipeline(conn, project_id=signed.project_id)]
                    found, next_cursor = await promotions.requests_page(
                        conn, project_id=signed.project_id, status=status or None, cursor=cursor, limit=PAGE_SIZE
                    )
                rows = [request_row(r) for r in found]
            except Exception as exc:
                error = problem_text(exc)
        async with self:
            self.pipeline, self.requests, self.error = pipeline, rows, error
            self._record_next(next_cursor)
            self.loaded = True
            self.updated_at = f"{datetime.now():%H:%M:%S}"

    @handler
    def set_status(self, value: str) -> Any:
        self.status = "" if value == "all" else value
        return self._first_page()

    @handler
    def tick(self, _value: str) -> Any:
        return PromotionsState.load


class PromotionState(SessionState):
    """One request: its checks with evidence links, decisions, and the caller's Approve/Reject."""

    request_id: rx.Field[str] = rx.field("")
    view: rx.Field[PromotionView] = rx.field(default_factory=PromotionView)
    comment: rx.Field[str] = rx.field("")
    error: rx.Field[str] = rx.field("")
    notice: rx.Field[str] = rx.field("")

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        async with self:
            self.request_id = page_tail(self)
            self.comment, self.notice, self.error = "", "", ""
        yield PromotionState.load

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        async with self:
            request_id = self.request_id
        try:
            async with as_user(signed.principal) as conn:
                request = await promotions.get_request(conn, request_id=uuid.UUID(request_id))
                refusal = await promotions.decision_refusal(conn, request_id=uuid.UUID(request_id))
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            self.view = promotion_view(request, refusal)

    set_comment = setter("comment", longest=2000)

    @handler
    def tick(self, _value: str) -> Any:
        return PromotionState.load if self.view.status == "pending" else None

    @signed_in_event
    async def decide(self, signed: SignedIn, decision: str) -> AsyncIterator[Any]:
        """Approve or reject as the signed-in person (refused in SQL for anyone else)."""
        async with self:
            request_id, comment = self.request_id, self.comment
        try:
            async with as_user(signed.principal) as conn:
                status = await promotions.decide(
                    conn, request_id=uuid.UUID(request_id), decision=decision, comment=comment
                )
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            self.error, self.comment = "", ""
            done = {"approve": "Approved", "reject": "Rejected", "cancel": "Cancelled"}.get(decision, decision)
            self.notice = f"{done}: the request is {status}"
        yield PromotionState.load
