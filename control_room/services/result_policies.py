"""Query results carry the access policies of their source datasets: before a viewer sees rows of an artifact
(the rows endpoint, the artifact browser's preview), the datasets its producing task read are resolved and the
viewer's own decisions are checked. A viewer who may not read a source sees no rows; one whose policies
filter or mask a source sees rows only of results computed as themselves (their policies applied when the
task ran), never someone else's unfiltered result.

The sources are the tables the task's statements (its query history) reference, parsed with sqlglot and
matched to the project's datasets as the agent's guard matches them (same table name, same schema when both
say one); a statement that does not parse withholds the rows (fail closed). Orgs without access policies
skip all of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from sqlglot import exp

from control_room.services.errors import Forbidden

DIALECTS = {"duckdb": "duckdb", "trino": "trino"}


@dataclass(frozen=True)
class Sources:
    """The tables a task's statements read, as name parts (catalog?, schema?, table), lower-case."""

    tables: frozenset[tuple[str, ...]]
    unparsed: bool = False


def statement_sources(engine: str, sql: str) -> Sources:
    """The tables one statement references (CTE names excluded); ``unparsed`` when sqlglot cannot read it."""
    try:
        trees = sqlglot.parse(sql, dialect=DIALECTS.get(engine, "duckdb"))
    except sqlglot.errors.SqlglotError:
        return Sources(frozenset(), unparsed=True)
    found: set[tuple[str, ...]] = set()
    for tree in trees:
        if tree is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            parts = tuple(p.lower() for p in (table.catalog, table.db, table.name) if p)
            if not parts or (len(parts) == 1 and parts[0] in ctes):
                continue
            found.add(parts)
    return Sources(frozenset(found))


def _matches(reference: tuple[str, ...], dataset_name: str) -> bool:
    parts = tuple(dataset_name.lower().split("."))
    if reference[-1] != parts[-1]:
        return False
    return len(reference) < 2 or len(parts) < 2 or reference[-2] == parts[-2]


async def withheld_reason(conn: AsyncConnection, *, artifact: dict[str, Any]) -> str | None:
    """Why the caller may not see rows of this artifact (None: they may). Trusted callers see everything."""
    task_id = artifact.get("task_id")
    if task_id is None:
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select ops.caller_is_end_user() as end_user, ops.caller_email() as email, p.org_id, p.id as project_id, "
            "exists (select 1 from ops.access_policies x where x.org_id = p.org_id) as governed, "
            "(r.requested_by = auth.uid() and not exists (select 1 from ops.job_templates jt "
            " where jt.id = r.template_id and jt.run_as is not null)) as ran_as_caller "
            "from ops.tasks t join ops.runs r on r.id = t.run_id join ops.projects p on p.id = t.project_id "
            "where t.id = %s",
            (task_id,),
        )
        row = await cur.fetchone()
        if row is None or not row["end_user"] or not row["governed"]:
            return None
        if row["email"] is None:
            return "rows withheld: the access policies of this result's sources cannot be checked for you"
        await cur.execute(
            "select engine, sql_text from ops.query_history where task_id = %s order by statement_index", (task_id,)
        )
        statements = await cur.fetchall()
    references: set[tuple[str, ...]] = set()
    for statement in statements:
        sources = statement_sources(str(statement["engine"]), str(statement["sql_text"]))
        if sources.unparsed:
            return "rows withheld: a statement of this result cannot be parsed to check its sources' policies"
        references |= sources.tables
    if not references:
        return None
    cur2 = await conn.execute("select ops.access_decisions(%s, 'user', %s)", (row["project_id"], row["email"]))
    decisions = [d[0] for d in await cur2.fetchall()]
    for decision in decisions:
        if not any(_matches(ref, str(decision["name"])) for ref in references):
            continue
        if not decision["read"]:
            return (
                f"rows withheld: you may not read dataset {decision['name']}, a source of this result "
                f"({decision['reasons']['read']})"
            )
        if (decision["row_filters"] or decision["masks"]) and not row["ran_as_caller"]:
            return (
                f"rows withheld: your access policies filter or mask dataset {decision['name']}, a source of this "
                "result computed as someone else; run the query yourself to see your rows"
            )
    return None


async def require_rows_visible(conn: AsyncConnection, *, artifact: dict[str, Any]) -> None:
    """Raise Forbidden (naming the source and the reason) when the caller may not see the artifact's rows."""
    reason = await withheld_reason(conn, artifact=artifact)
    if reason is not None:
        raise Forbidden(reason)
