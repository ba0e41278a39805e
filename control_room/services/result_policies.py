"""Query results carry the access policies of their source datasets: before a viewer sees rows of an artifact
(the rows endpoint, the artifact browser's preview), the datasets its producing task read are resolved and the
viewer's own decisions are checked. A viewer who may not read a source sees no rows; one whose policies
filter or mask a source sees rows only of results computed as themselves (their policies applied when the
task ran), never someone else's unfiltered result.

The sources are the tables the task's statements (its query history) reference, parsed with sqlglot and
matched to the project's datasets as the agent's guard matches them (same table name, same schema when both
say one); a statement that does not parse withholds the rows (fail closed). Tasks of engines that report
lineage instead (dbt, Spark) carry the inputs their report named (ops.task_datasets): those engines apply no
policies when they run, so a row filter on an input withholds the rows, and an input's masks apply to the
result's columns the mask's column maps to (the same name, or a name the task's column lineage leads to).
A policy preview (a run acting as another principal) is shown to the editor who started it when they manage
the policies of every source. Orgs without access policies skip all of this.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows, first_dict_row
from control_room.services.errors import Forbidden

DIALECTS = {"duckdb": "duckdb", "trino": "trino"}


@dataclass(frozen=True)
class Sources:
    """The tables a task's statements read, as name parts (catalog?, schema?, table), lower-case."""

    tables: frozenset[tuple[str, ...]]
    unparsed: bool = False


def statement_sources(engine: str, sql: str) -> Sources:
    """The tables one statement references (CTE names excluded); ``unparsed`` when sqlglot cannot read it."""
    import sqlglot  # most of a second to import: paid by the first result read, not by a replica's start
    from sqlglot import exp

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


@dataclass(frozen=True)
class RowsPolicy:
    """What a viewer may see of a result: nothing (``withheld`` says why), or its rows with ``masks`` (result
    column, lower-case, -> mask kind) applied where a lineage input's mask maps to a column."""

    withheld: str | None = None
    masks: dict[str, str] = field(default_factory=dict)

    @property
    def reason_for_bytes(self) -> str | None:
        """Why the raw bytes (a download, Ask's answer) are withheld: masked cells cannot be served unmasked."""
        if self.withheld is not None or not self.masks:
            return self.withheld
        return (
            f"download withheld: your access policies mask column(s) {', '.join(sorted(self.masks))} of this "
            "result's sources; its rows are shown masked in the preview and the rows API"
        )


def mask_value(kind: str, value: Any) -> Any:
    """One cell masked as the agent's rewrite masks it (sha256 hex of the text, two characters and ****, ...);
    an expression mask cannot be evaluated here and gives null."""
    if kind == "redact":
        return "****"
    if value is None or kind in ("null", "expression"):
        return None
    text = value if isinstance(value, str) else str(value)
    if kind == "hash":
        return hashlib.sha256(text.encode()).hexdigest()
    return text[:2] + "****"


def _mapped_columns(source: str, columns: set[str], edges: list[tuple[str, str, list[dict[str, Any]]]]) -> set[str]:
    """The source's columns and every column the task's column lineage leads them to (any depth)."""
    reached = {(source, c) for c in columns}
    frontier = list(reached)
    while frontier:
        dataset, column = frontier.pop()
        for upstream, downstream, pairs in edges:
            if upstream != dataset:
                continue
            for pair in pairs:
                target = (downstream, str(pair.get("downstream_column") or "").lower())
                if str(pair.get("upstream_column") or "").lower() == column and target[1] and target not in reached:
                    reached.add(target)
                    frontier.append(target)
    return {column for _, column in reached}


async def rows_policy(conn: AsyncConnection, *, artifact: dict[str, Any]) -> RowsPolicy:
    """What the caller may see of this artifact's rows. Trusted callers see everything."""
    task_id = artifact.get("task_id")
    if task_id is None:
        return RowsPolicy()
    row = await first_dict_row(
        conn,
        "select ops.caller_is_end_user() as end_user, ops.caller_email() as email, p.org_id, p.id as project_id, "
        "t.engine, coalesce(ops.org_role(p.org_id), '') = 'admin' as org_admin, "
        "exists (select 1 from ops.access_policies x where x.org_id = p.org_id) as governed, "
        "(r.requested_by = auth.uid() and not exists (select 1 from ops.job_templates jt "
        " where jt.id = r.template_id and jt.run_as is not null) "
        " and not exists (select 1 from ops.policy_previews pv where pv.run_id = r.id)) as ran_as_caller, "
        "exists (select 1 from ops.policy_previews pv where pv.run_id = r.id "
        " and pv.requested_by = auth.uid()) as previewed_by_caller "
        "from ops.tasks t join ops.runs r on r.id = t.run_id join ops.projects p on p.id = t.project_id "
        "where t.id = %s",
        (task_id,),
    )
    if row is None or not row["end_user"] or not row["governed"]:
        return RowsPolicy()
    if row["email"] is None:
        return RowsPolicy("rows withheld: the access policies of this result's sources cannot be checked for you")
    statements = await dict_rows(
        conn, "select engine, sql_text from ops.query_history where task_id = %s order by statement_index", (task_id,)
    )
    task_datasets = await dict_rows(
        conn, "select dataset_id, direction from ops.task_datasets where task_id = %s", (task_id,)
    )
    references: set[tuple[str, ...]] = set()
    for statement in statements:
        sources = statement_sources(str(statement["engine"]), str(statement["sql_text"]))
        if sources.unparsed:
            return RowsPolicy(
                "rows withheld: a statement of this result cannot be parsed to check its sources' policies"
            )
        references |= sources.tables
    inputs = {str(d["dataset_id"]) for d in task_datasets if d["direction"] == "input"}
    if not references and not inputs:
        return RowsPolicy()
    cur2 = await conn.execute("select ops.access_decisions(%s, 'user', %s)", (row["project_id"], row["email"]))
    decisions = [d[0] for d in await cur2.fetchall()]
    masks: dict[str, str] = {}
    edges: list[tuple[str, str, list[dict[str, Any]]]] | None = None
    for decision in decisions:
        by_sql = any(_matches(ref, str(decision["name"])) for ref in references)
        by_lineage = str(decision["dataset_id"]) in inputs
        if not by_sql and not by_lineage:
            continue
        name = decision["name"]
        if not decision["read"]:
            return RowsPolicy(
                f"rows withheld: you may not read dataset {name}, a source of this result "
                f"({decision['reasons']['read']})"
            )
        if row["previewed_by_caller"]:
            if not (row["org_admin"] or decision["admin"]):
                return RowsPolicy(
                    f"rows withheld: this preview read dataset {name}, whose policies you do not manage "
                    "(only org admins and the dataset's owners preview as someone else)"
                )
            continue  # rows computed as the previewed principal, for an editor of the source's policies
        if by_sql and (decision["row_filters"] or decision["masks"]) and not row["ran_as_caller"]:
            return RowsPolicy(
                f"rows withheld: your access policies filter or mask dataset {name}, a source of this "
                "result computed as someone else; run the query yourself to see your rows"
            )
        if by_lineage and not by_sql:
            if decision["row_filters"]:
                return RowsPolicy(
                    f"rows withheld: your access policies filter the rows of dataset {name}, a source of this "
                    f"result; the {row['engine']} engine does not apply row filters"
                )
            if decision["masks"]:
                if edges is None:
                    edges = await _task_edges(conn, task_id)
                for mask in decision["masks"]:
                    column = str(mask["column"]).lower()
                    for mapped in _mapped_columns(str(decision["dataset_id"]), {column}, edges):
                        masks.setdefault(mapped, str(mask["kind"]))
    return RowsPolicy(masks=masks)


async def _task_edges(conn: AsyncConnection, task_id: Any) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The column lineage of the edges between the task's inputs and outputs."""
    cur = await conn.execute(
        "select e.upstream_id::text, e.downstream_id::text, e.column_lineage from ops.lineage_edges e "
        "where e.upstream_id in (select dataset_id from ops.task_datasets where task_id = %s and direction = 'input') "
        "and e.downstream_id in (select dataset_id from ops.task_datasets where task_id = %s and direction = 'output')",
        (task_id, task_id),
    )
    return [(str(r[0]), str(r[1]), list(r[2] or [])) for r in await cur.fetchall()]


async def withheld_reason(conn: AsyncConnection, *, artifact: dict[str, Any]) -> str | None:
    """Why the caller may not have this artifact's bytes as stored (None: they may)."""
    return (await rows_policy(conn, artifact=artifact)).reason_for_bytes


async def require_rows_visible(conn: AsyncConnection, *, artifact: dict[str, Any]) -> None:
    """Raise Forbidden (naming the source and the reason) when the caller may not have the artifact's bytes."""
    reason = await withheld_reason(conn, artifact=artifact)
    if reason is not None:
        raise Forbidden(reason)


async def require_rows_policy(conn: AsyncConnection, *, artifact: dict[str, Any]) -> RowsPolicy:
    """The masks to apply to the rows the caller may see; Forbidden when they may see none."""
    policy = await rows_policy(conn, artifact=artifact)
    if policy.withheld is not None:
        raise Forbidden(policy.withheld)
    return policy
