"""The policy editor's live preview: "as principal X, this query returns…". A preview is an ordinary one-task
DuckDB run on the warehouse whose task acts as X (ops.start_policy_preview, in the same transaction as the
submit, so no agent ever claims it as its requester): the agent's access guard applies X's refusals, row
filters and masks with the same rewrite as for X's own tasks, lets it only read, and the run goes through
caps, events, the refusal audit and the result checks like any other. Only an org admin or an editor of the
dataset's policies (its owner) starts one; its rows are shown to them when they manage every source's
policies (services/result_policies.py)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import AsyncConnection

from control_room.db.rows import first_dict_row
from control_room.services import access_policies, artifacts, queries, result_policies, runs
from control_room.services.errors import Invalid, NotFound, found_row
from control_room.storage import get_store

PreviewPrincipalKind = Literal["user", "service_principal", "group"]
PREVIEW_TAG = "policy-preview"
PREVIEW_ROWS = 100
FINISHED = ("succeeded", "failed", "cancelled", "timed_out", "lost", "skipped")


@dataclass(frozen=True)
class PreviewStarted:
    run_id: uuid.UUID
    dataset: str
    principal_kind: str
    principal: str
    sql: str


@dataclass
class PreviewResult:
    """Where a preview is: its run's status, and once it succeeded the rows the principal gets."""

    run_id: uuid.UUID
    status: str
    principal_kind: str
    principal: str
    dataset: str
    sql: str
    done: bool
    error: str | None = None
    columns: list[dict[str, str]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    total_rows: int | None = None


def default_sql(dataset_name: str) -> str:
    """``select * from <schema>.<table> limit 20`` for a dataset named ``[catalog.]schema.table``."""
    from sqlglot import exp  # most of a second to import: paid by the first preview, not by a replica's start

    parts = dataset_name.split(".")
    table = exp.table_(parts[-1], db=parts[-2] if len(parts) > 1 else None, quoted=True)
    return exp.select("*").from_(table).limit(20).sql(dialect="duckdb")


def check_query(sql: str) -> str:
    """The preview's SQL when it is one SELECT query (the agent enforces the same, as the principal)."""
    import sqlglot  # see default_sql
    from sqlglot import exp

    text = sql.strip().rstrip(";").strip()
    if not text:
        raise Invalid("give a query, e.g. select * from main.customers limit 20", field="sql")
    try:
        trees = [t for t in sqlglot.parse(text, read="duckdb") if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise Invalid(f"the query cannot be parsed: {str(exc).splitlines()[0]}", field="sql") from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Select | exp.SetOperation) or trees[0].args.get("into"):
        raise Invalid("a preview runs one SELECT query (it only reads, as the principal)", field="sql")
    return text


async def _dataset(conn: AsyncConnection, org_id: uuid.UUID, dataset: str) -> dict[str, Any]:
    target = await access_policies.dataset_target(conn, org_id=org_id, dataset=dataset)
    return await found_row(
        conn,
        "select d.id, d.name, p.id as project_id, p.slug from ops.datasets d "
        "join ops.projects p on p.id = d.project_id where d.id = %s",
        (target,),
        NotFound(f'no dataset "{dataset}" visible to you', field="dataset"),
    )


async def start_preview(
    conn: AsyncConnection,
    *,
    org_id: uuid.UUID,
    dataset: str,
    principal_kind: PreviewPrincipalKind,
    principal: str,
    sql: str | None,
    environment: str,
    requested_by: uuid.UUID | None,
    requested_by_name: str | None,
) -> PreviewStarted:
    """Submit the preview run (one DuckDB task) of the dataset's project, acting as the principal. Refused
    (LH403) unless the caller edits the dataset's policies; the run and its preview mark commit together."""
    if principal_kind not in ("user", "service_principal", "group"):
        raise Invalid("one of user, service_principal, group", field="principal_kind")
    if not principal.strip():
        raise Invalid("name the principal: an e-mail, a service principal or a group", field="principal")
    found = await _dataset(conn, org_id, dataset)
    query = check_query(sql) if sql and sql.strip() else default_sql(str(found["name"]))
    who = principal.strip()
    spec = {
        "name": f"policy preview of {found['name']} as {who}"[:200],
        "tasks": [{"key": "preview", "engine": "duckdb", "sql": query, "max_attempts": 1}],
    }
    async with conn.transaction():
        run_id, _ = await runs.submit_run(
            conn, project=str(found["project_id"]), environment=environment, spec=spec, params={},
            idempotency_key=None, priority=0, tags=[PREVIEW_TAG], trigger="api",
            requested_by=requested_by, requested_by_name=requested_by_name,
        )  # fmt: skip
        await conn.execute(
            "select ops.start_policy_preview(%s, %s, %s, %s)", (run_id, found["id"], principal_kind, who)
        )
    return PreviewStarted(run_id, str(found["name"]), principal_kind, who, query)


async def preview_result(conn: AsyncConnection, *, run_id: uuid.UUID, limit: int = PREVIEW_ROWS) -> PreviewResult:
    """The preview's status, its error (a refusal names the dataset and privilege), and once it succeeded the
    first rows of its result as the caller may see them (the sources' policies checked as for any result)."""
    row = await first_dict_row(
        conn,
        "select pv.principal_kind, pv.principal, d.name as dataset, r.status, t.id as task_id, t.spec ->> 'sql' "
        "as sql, coalesce(t.error, r.error) as error from ops.policy_previews pv "
        "join ops.runs r on r.id = pv.run_id join ops.tasks t on t.run_id = r.id "
        "left join ops.datasets d on d.id = pv.dataset_id where pv.run_id = %s",
        (run_id,),
    )
    if row is None:
        raise NotFound(f"no policy preview {run_id} visible to you (previews are their editor's and org admins')",
                       field="run_id")  # fmt: skip
    result = PreviewResult(
        run_id=run_id, status=str(row["status"]), principal_kind=str(row["principal_kind"]),
        principal=str(row["principal"]), dataset=str(row["dataset"] or ""), sql=str(row["sql"] or ""),
        done=row["status"] in FINISHED, error=row["error"] if row["status"] != "succeeded" else None,
    )  # fmt: skip
    if row["status"] != "succeeded":
        return result
    parquet = next(
        (a for a in await artifacts.list_run_artifacts(conn, run_id=run_id) if queries.is_parquet_result(a)), None
    )
    if parquet is None:
        result.error = "the preview ran but left no result table"
        return result
    policy = await result_policies.require_rows_policy(conn, artifact=parquet)
    page = await asyncio.to_thread(
        queries.read_result_rows, get_store(), parquet, offset=0, limit=limit, masks=policy.masks
    )
    result.columns, result.rows, result.total_rows = page["columns"], page["rows"], page["total_rows"]
    return result
