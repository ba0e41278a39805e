"""Promotion gates for clients: request, approve, reject and cancel promotions, roll back, report external
checks, and read the pipeline (each job's deployed version per environment) and requests with their evidence.

Every decision is taken in SQL (20261205000200_promotions.sql): the role and approver checks, the checks'
evaluation with its evidence, the transition out of pending and the deployment it writes. ``now`` is the
injectable clock of trusted callers (tests, the promotion loop); signed-in callers always get the server's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows, model_list, one_row, scalar
from control_room.db.tables import Deployment
from control_room.services.errors import Invalid
from control_room.services.pagination import ListQuery, Page, cursor_after, decode_cursor, newest_first
from control_room.services.row_detail import RowDetail

ENVIRONMENTS = ("dev", "staging", "prod")
STATUSES = ("pending", "promoted", "rejected", "cancelled", "superseded")
DECISIONS = ("approve", "reject", "cancel")

REQUEST_COLUMNS = """
    x.id, x.project_id, p.slug as project, x.template_id, t.name as job, x.version, x.from_environment,
    x.to_environment, x.kind, x.gate ->> 'name' as gate_name, x.gate, x.requested_by, x.requested_by_id, x.comment,
    x.status, x.checks, x.checks_passed, x.evidence_epoch, x.evaluated_at, x.decided_at, x.decided_by, x.outcome,
    x.created_at, x.updated_at, x.check_run_id, x.check_run_refusal,
    (select count(distinct d.actor_id) from ops.promotion_decisions d
     where d.request_id = x.id and d.decision = 'approve' and d.evidence_epoch = x.evidence_epoch)::int as approvals,
    coalesce((x.gate ->> 'required_approvals')::int, 0) as required_approvals
"""
REQUEST_FROM = """
    ops.promotion_requests x join ops.job_templates t on t.id = x.template_id
    join ops.projects p on p.id = x.project_id
"""
BY_NEWEST = newest_first("x")


async def request_promotion(
    conn: AsyncConnection,
    *,
    template_id: uuid.UUID,
    version: int,
    to_environment: str,
    comment: str = "",
    user_id: uuid.UUID | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Open a request to move ``version`` into ``to_environment`` (operators); its checks are evaluated at once."""
    if to_environment not in ("staging", "prod"):
        raise Invalid(f'"{to_environment}": promotions go to staging or prod', field="to_environment")
    request_id = await scalar(
        conn,
        "select ops.request_promotion(%s, %s, %s, %s, %s, %s, coalesce(%s, now()))",
        (template_id, version, to_environment, comment, user_id, by, now),
    )
    return await get_request(conn, request_id=request_id)


async def decide(
    conn: AsyncConnection,
    *,
    request_id: uuid.UUID,
    decision: str,
    comment: str = "",
    user_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> str:
    """Approve, reject or cancel a pending request; returns its status afterwards (``promoted`` when this
    approval was the last one missing and the checks pass)."""
    if decision not in DECISIONS:
        raise Invalid(f'"{decision}": use one of {", ".join(DECISIONS)}', field="decision")
    status: str = await scalar(
        conn,
        "select ops.decide_promotion(%s, %s, %s, %s, coalesce(%s, now()))",
        (request_id, decision, comment, user_id, now),
    )
    return status


async def decision_refusal(
    conn: AsyncConnection, *, request_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> str | None:
    """Why the caller (a trusted caller: ``user_id``) may not approve or reject; None when they may."""
    refusal: str | None = await scalar(conn, "select ops.promotion_decision_refusal(%s, %s)", (request_id, user_id))
    return refusal


async def rollback(
    conn: AsyncConnection,
    *,
    template_id: uuid.UUID,
    environment: str,
    comment: str = "",
    user_id: uuid.UUID | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Roll ``environment`` back to the version deployed before the current one. Without rollback approvals on
    its gate the rollback is done at once (admins): status ``rolled_back``. Otherwise a rollback request opens
    (operators; no checks, the gate's ``rollback_approvals`` approvals, four eyes): status ``pending`` with its
    ``request_id`` (``promoted`` when the gate's approvals were none after all)."""
    row = await one_row(
        conn,
        "select version, previous_version, request_id, status from ops.rollback_deployment(%s, %s, %s, %s, %s)",
        (template_id, environment, comment, user_id, by),
    )
    return {"version": int(row[0]), "previous_version": int(row[1]), "request_id": row[2], "status": row[3]}


async def report_check(
    conn: AsyncConnection,
    *,
    template_id: uuid.UUID,
    version: int,
    name: str,
    status: str,
    url: str | None = None,
    summary: str = "",
    by: str | None = None,
) -> int:
    """Record an external check's result (CI's ``pr-gate``) for a version; pending requests re-evaluate."""
    report_id: int = await scalar(
        conn,
        "select ops.report_version_check(%s, %s, %s, %s, %s, %s, %s)",
        (template_id, version, name, status, url, summary, by),
    )
    return report_id


async def evaluate_pending(conn: AsyncConnection, *, now: datetime, min_age_s: float = 0.0, limit: int = 100) -> int:
    """The promotion loop's pass: re-evaluate pending requests (each under its row lock); returns promotions."""
    promoted: int = await scalar(
        conn,
        "select ops.evaluate_pending_promotions(%s, %s, make_interval(secs => %s))",
        (now, limit, min_age_s),
    )
    return promoted


REQUEST_DETAIL = RowDetail(
    REQUEST_COLUMNS, REQUEST_FROM, "x.id", what="promotion request", field="request_id", children="decisions",
    child_rows="""
        select d.id, d.decision, d.actor, d.actor_id, d.comment, d.evidence_epoch, d.created_at,
               (d.decision = 'approve' and d.evidence_epoch = %(evidence_epoch)s) as in_force
        from ops.promotion_decisions d where d.request_id = %(id)s order by d.id
    """,
)  # fmt: skip


async def get_request(conn: AsyncConnection, *, request_id: uuid.UUID) -> dict[str, Any]:
    """A request with its checks (and their evidence), approvals in force and every decision."""
    return await REQUEST_DETAIL.read(conn, request_id)


async def requests_page(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID | None = None,
    template_id: uuid.UUID | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Requests newest first (keyset pages), of a project or a job, optionally of one status."""
    if not 1 <= limit <= 500:
        raise Invalid("must be between 1 and 500", field="limit")
    if status is not None and status not in STATUSES:
        raise Invalid(f'unknown status "{status}"; use one of {", ".join(STATUSES)}', field="status")
    conditions = ListQuery()
    conditions.equal("x.project_id", project_id)
    conditions.equal("x.template_id", template_id)
    conditions.equal("x.status", status)
    if cursor:
        conditions.after(BY_NEWEST, *decode_cursor(cursor))
    return await conditions.page(
        conn, columns=REQUEST_COLUMNS, source=REQUEST_FROM, keyset=BY_NEWEST, limit=limit, cursor_of=cursor_after
    )


async def pipeline(conn: AsyncConnection, *, project_id: uuid.UUID) -> list[dict[str, Any]]:
    """Each active job of a project with, per environment: the version it runs (``deployed``; dev and ungated
    environments run the latest unless asked otherwise), whether a gate guards it, and the pending request
    into it (id, version, checks passed, approvals)."""
    rows = await dict_rows(
        conn,
        """
            select t.id as template_id, t.name as job,
                   (select max(v.version) from ops.job_template_versions v where v.template_id = t.id) as latest,
                   e.name as environment,
                   (select g.name from ops.promotion_gates g  -- as ops.gate_into, but read under RLS
                    where g.project_id = t.project_id and g.enabled and g.to_environment = e.name
                      and e.name <> 'dev' and (g.template_id is null or g.template_id = t.id)
                    order by g.template_id is null, g.name limit 1) as gate,
                   d.version as deployed, d.action as deployed_by_action, d.deployed_at,
                   pr.id as request_id, pr.version as request_version, pr.checks_passed as request_checks_passed,
                   pr.checks as request_checks, pr.kind as request_kind,
                   (select count(distinct dd.actor_id) from ops.promotion_decisions dd
                    where dd.request_id = pr.id and dd.decision = 'approve'
                      and dd.evidence_epoch = pr.evidence_epoch)::int as request_approvals,
                   coalesce((pr.gate ->> 'required_approvals')::int, 0) as request_required_approvals
            from ops.job_templates t
            join ops.environments e on e.project_id = t.project_id
            left join lateral (select x.version, x.action, x.deployed_at from ops.deployments x
                               where x.template_id = t.id and x.environment_id = e.id
                               order by x.id desc limit 1) d on true
            left join ops.promotion_requests pr
                   on pr.template_id = t.id and pr.to_environment = e.name and pr.status = 'pending'
            where t.project_id = %s and t.archived_at is null
            order by t.name, array_position(array['dev', 'staging', 'prod'], e.name)
            """,
        (project_id,),
    )
    jobs: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        job = jobs.setdefault(
            row["template_id"],
            {"template_id": row["template_id"], "job": row["job"], "latest": row["latest"], "environments": {}},
        )
        gated = row["gate"] is not None
        job["environments"][row["environment"]] = {
            "gate": row["gate"],
            "gated": gated,
            # what a run there uses when no version is asked for
            "runs": row["deployed"] if gated else row["latest"],
            "deployed": row["deployed"],
            "deployed_at": row["deployed_at"],
            "request_id": row["request_id"],
            "request_version": row["request_version"],
            "request_checks_passed": row["request_checks_passed"],
            "request_checks": row["request_checks"] or [],
            "request_kind": row["request_kind"],
            "request_approvals": row["request_approvals"],
            "request_required_approvals": row["request_required_approvals"],
        }
    return list(jobs.values())


async def deployments(
    conn: AsyncConnection, *, template_id: uuid.UUID, environment: str | None = None, limit: int = 50
) -> list[Deployment]:
    """A job's deployment history, newest first (of one environment when given)."""
    if environment is not None and environment not in ENVIRONMENTS:
        raise Invalid(f'"{environment}" is not dev, staging or prod', field="environment")
    return await model_list(
        conn,
        Deployment,
        "select * from ops.deployments where template_id = %s and (%s::text is null or environment = %s) "
        "order by id desc limit %s",
        (template_id, environment, environment, limit),
    )
