"""NL→SQL over HTTP: ask a question (SQL for review, or why not), run the reviewed SQL as a DuckDB SQL task,
give feedback, list the project's questions (the evaluation set)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from control_room.api.deps import UserConnection
from control_room.api.models import Strict
from control_room.db.tables import Nl2sqlQuestion
from control_room.services import nl2sql

router = APIRouter(tags=["ask"])
ProjectQuery = Annotated[uuid.UUID, Query(description="Project id.")]


class AskBody(Strict):
    question: str = Field(min_length=1, max_length=2000)


class AskReply(BaseModel):
    question_id: uuid.UUID
    sql: str | None = Field(description="The SQL to review (null when the question was refused).")
    message: str
    refused: bool
    provider: str


class RunBody(Strict):
    sql: str = Field(min_length=1, max_length=20_000, description="The reviewed (possibly edited) SQL.")
    environment: str = Field("dev", pattern=r"^(dev|staging|prod)$")


class RunReply(BaseModel):
    run_id: uuid.UUID
    sql: str


class FeedbackBody(Strict):
    correct: bool
    fixed_sql: str | None = Field(None, max_length=20_000)


class QuestionPublic(BaseModel):
    id: uuid.UUID
    question: str
    provider: str
    outcome: str
    generated_sql: str | None
    message: str
    final_sql: str | None
    run_id: uuid.UUID | None
    feedback: str | None
    fixed_sql: str | None
    asked_by: str
    created_at: datetime


@router.post("/ask", response_model=AskReply)
async def ask(project: ProjectQuery, body: AskBody, conn: UserConnection) -> dict[str, Any]:
    """Translate a question into SQL over the datasets the caller may read; stored for the evaluation set."""
    policy = await nl2sql.access_policy(conn, project_id=project)
    translation = nl2sql.translate(body.question, policy)
    question_id = await nl2sql.record_question(conn, project_id=project, question=body.question,
                                               translation=translation)  # fmt: skip
    return {"question_id": question_id, "sql": translation.sql, "message": translation.message,
            "refused": translation.refused, "provider": translation.provider}  # fmt: skip


@router.post("/ask/{question_id}/run", response_model=RunReply, status_code=201)
async def run_question(
    question_id: uuid.UUID, project: ProjectQuery, body: RunBody, conn: UserConnection
) -> dict[str, Any]:
    """Run the reviewed SQL as a DuckDB SQL task (checked again by the guardrails; operators)."""
    policy = await nl2sql.access_policy(conn, project_id=project)
    run_id = await nl2sql.run_question(
        conn, project_id=project, question_id=question_id, sql=body.sql, policy=policy,
        environment=body.environment,
    )  # fmt: skip
    return {"run_id": run_id, "sql": nl2sql.guard(body.sql, policy)}


@router.post("/ask/{question_id}/feedback", status_code=204)
async def feedback(question_id: uuid.UUID, body: FeedbackBody, conn: UserConnection) -> None:
    """Mark the question's SQL correct, or wrong with the fixed SQL."""
    await nl2sql.give_feedback(conn, question_id=question_id, correct=body.correct, fixed_sql=body.fixed_sql)


@router.get("/ask", response_model=list[QuestionPublic])
async def list_questions(
    project: ProjectQuery, conn: UserConnection, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[Nl2sqlQuestion]:
    """The project's latest questions, their SQL, outcome and feedback."""
    return await nl2sql.list_questions(conn, project_id=project, limit=limit)
