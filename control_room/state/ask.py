"""Ask page: a question becomes SQL shown for review and editing; run, it becomes a DuckDB SQL task whose
result table and an automatic chart appear here; feedback makes the question part of the evaluation set."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import plotly.graph_objects as go
import reflex as rx
from anyio import to_thread

from control_room.components.dashboard_figures import chart_figure
from control_room.services import artifacts, nl2sql, queries, result_policies
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, page_url, setter
from control_room.state.formatting import cell_text
from control_room.state.rows import Translation
from control_room.storage import get_store

RUN_DEADLINE_S = 180.0
POLL_S = 1.0
RESULT_ROWS = 200
FINISHED = ("succeeded", "failed", "cancelled", "timed_out")


class AskState(SessionState):
    """The question, its SQL under review, the run and its result."""

    question: rx.Field[str] = rx.field("")
    sql: rx.Field[str] = rx.field("")
    translation: rx.Field[Translation] = rx.field(default_factory=Translation)
    run_id: rx.Field[str] = rx.field("")
    run_status: rx.Field[str] = rx.field("")
    columns: rx.Field[list[str]] = rx.field(default_factory=list)
    rows: rx.Field[list[list[str]]] = rx.field(default_factory=list)
    figure: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    has_chart: rx.Field[bool] = rx.field(False)
    error: rx.Field[str] = rx.field("")
    busy: rx.Field[bool] = rx.field(False)
    feedback_given: rx.Field[str] = rx.field("")

    @signed_in_event
    async def open_page(self, signed: SignedIn) -> None:
        """Check the session; ``?q=`` fills in a question."""
        async with self:
            wanted = page_url(self).query_parameters.get("q", "")
            if wanted:
                self.question = wanted[:2000]

    set_question = setter("question", longest=2000)
    set_sql = setter("sql", longest=20_000)

    @background
    async def ask(self) -> None:
        """Translate the question (the built-in translator, or the configured LLM) and show the SQL."""
        signed = await self.signed_in()
        async with self:
            if signed is None or signed.project_id is None or self.busy or not self.question.strip():
                return
            self.busy, self.error, question = True, "", self.question.strip()
        try:
            async with as_user(signed.principal) as conn:
                policy = await nl2sql.access_policy(conn, project_id=signed.project_id)
                translation = nl2sql.translate(question, policy)
                question_id = await nl2sql.record_question(conn, project_id=signed.project_id, question=question,
                                                           translation=translation)  # fmt: skip
        except Exception as exc:
            await self._failed(exc)
            return
        async with self:
            self.busy = False
            self.sql, self.run_id, self.run_status = translation.sql or "", "", ""
            self.translation = Translation(str(question_id), translation.provider, translation.refused,
                                           translation.message)  # fmt: skip
            self.columns, self.rows, self.has_chart, self.feedback_given = [], [], False, ""

    @background
    async def run(self) -> AsyncIterator[Any]:
        """Run the reviewed SQL as a DuckDB SQL task on an agent, wait for it, then show its result."""
        signed = await self.signed_in()
        async with self:
            if signed is None or signed.project_id is None or self.busy or not self.translation.question_id:
                return
            self.busy, self.error, sql, question_id = True, "", self.sql, uuid.UUID(self.translation.question_id)
        try:
            async with as_user(signed.principal) as conn:
                policy = await nl2sql.access_policy(conn, project_id=signed.project_id)
                run_id = await nl2sql.run_question(conn, project_id=signed.project_id, question_id=question_id,
                                                   sql=sql, policy=policy)  # fmt: skip
        except Exception as exc:
            await self._failed(exc)
            return
        async with self:
            self.run_id, self.run_status = str(run_id), "queued"
        yield
        outcome: dict[str, Any] = {}
        deadline = time.monotonic() + RUN_DEADLINE_S
        try:
            while time.monotonic() < deadline:
                async with as_user(signed.principal) as conn:
                    outcome = await nl2sql.question_outcome(conn, question_id=question_id)
                async with self:
                    self.run_status = str(outcome.get("status") or "queued")
                yield
                if outcome.get("status") in FINISHED:
                    break
                await asyncio.sleep(POLL_S)
            result = await self._result(signed.principal, outcome)
        except Exception as exc:
            await self._failed(exc)
            return
        async with self:
            self.busy = False
            if outcome.get("status") != "succeeded":
                self.error = (
                    f"the run {outcome.get('status') or 'did not finish in time'}: {outcome.get('error') or ''}"
                )
                return
            self.columns = [c["name"] for c in result["columns"]]
            self.rows = [[cell_text(v) for v in row] for row in result["rows"]]
            kind, x, y = nl2sql.auto_chart(self.columns, [c["type"] for c in result["columns"]])
            self.has_chart = kind != "table"
            if self.has_chart:
                self.figure = chart_figure(kind, self.columns, result["rows"], x=x, y=y, color=None)

    async def _failed(self, exc: Exception) -> None:
        async with self:
            self.busy, self.error = False, problem_text(exc)

    async def _result(self, principal: Any, outcome: dict[str, Any]) -> dict[str, Any]:
        if outcome.get("status") != "succeeded" or not outcome.get("result_artifact_id"):
            return {"columns": [], "rows": []}
        async with as_user(principal) as conn:
            artifact = await artifacts.get_artifact(conn, artifact_id=outcome["result_artifact_id"])
            await result_policies.require_rows_visible(conn, artifact=artifact)
        store = get_store()
        return await to_thread.run_sync(lambda: queries.read_result_rows(store, artifact, offset=0, limit=RESULT_ROWS))

    @background
    async def give_feedback(self, correct: bool) -> None:
        """Mark the SQL correct, or wrong with the SQL as edited now (the fixed SQL)."""
        signed = await self.signed_in()
        async with self:
            if signed is None or not self.translation.question_id:
                return
            question_id, sql = uuid.UUID(self.translation.question_id), self.sql
        try:
            async with as_user(signed.principal) as conn:
                await nl2sql.give_feedback(conn, question_id=question_id, correct=correct,
                                           fixed_sql=None if correct else sql)  # fmt: skip
        except Exception as exc:
            async with self:
                self.error = problem_text(exc)
            return
        async with self:
            self.feedback_given = (
                "Thanks: marked correct." if correct else "Thanks: marked wrong, with your SQL as the fix."
            )
