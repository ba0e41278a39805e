"""The org's access policies as Trino file-based access control rules (``rules.json``), so a real Trino
cluster enforces natively what the agent enforces by rewriting.

Trino applies the first table rule matching the user (regex on ``user``/``group``) and the table; no
match is a denial. So the export computes the decision of each principal the policies name (users, then
service principals, then groups) for each governed dataset, writes one rule per (principal, dataset)
with its privileges, masked columns and row filter, then one rule per dataset for everybody else, then
a catch-all allowing the tables no policy governs. A user in several groups gets the rule of the first
group in name order (Trino does not merge rules): keep group policies on one dataset non-overlapping.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from control_room.db.rows import scalar
from control_room.services.errors import Forbidden

WRITE_PRIVILEGES = ["SELECT", "INSERT", "DELETE", "UPDATE"]
ALL_PRIVILEGES = [*WRITE_PRIVILEGES, "OWNERSHIP", "GRANT_SELECT"]
_PRINCIPAL_FUNCTIONS = (
    (re.compile(r"current_principal_groups\s*\(\s*\)", re.IGNORECASE), "current_groups()"),
    (re.compile(r"current_principal\s*\(\s*\)", re.IGNORECASE), "current_user"),
)


def trino_mask(column: str, kind: str, expression: str | None) -> str:
    """The Trino SQL expression replacing a masked column's value."""
    quoted = '"' + column.replace('"', '""') + '"'
    if kind == "null":
        return "NULL"
    if kind == "hash":
        return f"lower(to_hex(sha256(to_utf8(CAST({quoted} AS varchar)))))"
    if kind == "redact":
        return "'****'"
    if kind == "partial":
        return f"concat(substr(CAST({quoted} AS varchar), 1, 2), '****')"
    return trino_predicate(expression or "NULL")


def trino_predicate(sql: str) -> str:
    """A policy's SQL with our principal functions spelled as Trino's (current_user, current_groups())."""
    for pattern, replacement in _PRINCIPAL_FUNCTIONS:
        sql = pattern.sub(replacement, sql)
    return sql


def _exact(name: str) -> str:
    """A Java regex matching exactly this name (Trino matches rule fields as regexes)."""
    return re.escape(name)


def _table_rule(decision: dict[str, Any], catalog: str) -> dict[str, Any]:
    parts = str(decision["name"]).split(".")
    schema = parts[-2] if len(parts) >= 2 else "default"
    privileges = ALL_PRIVILEGES if decision["admin"] else WRITE_PRIVILEGES if decision["write"] else ["SELECT"]
    rule: dict[str, Any] = {
        "catalog": _exact(catalog),
        "schema": _exact(schema),
        "table": _exact(parts[-1]),
        "privileges": privileges if decision["read"] else [],
    }
    if decision["read"] and decision["masks"]:
        rule["columns"] = [
            {"name": m["column"], "mask": trino_mask(m["column"], m["kind"], m.get("expression"))}
            for m in decision["masks"]
        ]
    if decision["read"] and decision["row_filters"]:
        rule["filter"] = " AND ".join(f"({trino_predicate(f['predicate'])})" for f in decision["row_filters"])
    return rule


async def _principals(conn: AsyncConnection, org_id: uuid.UUID) -> list[tuple[str, str]]:
    """(kind, name) of every principal a policy names: users, then service principals, then groups."""
    cur = await conn.execute(
        "select distinct p.principal_kind, p.principal from ops.access_policies p "
        "where p.org_id = %s and p.principal_kind <> 'everyone'",
        (org_id,),
    )
    order = {"user": 0, "service_principal": 1, "group": 2}
    return sorted(((str(k), str(n)) for k, n in await cur.fetchall()), key=lambda x: (order[x[0]], x[1]))


async def export(conn: AsyncConnection, *, org_id: uuid.UUID, catalog: str = "lakehouse") -> dict[str, Any]:
    """The rules.json document for the org's datasets as tables of ``catalog`` (org members)."""
    if not await scalar(conn, "select ops.is_org_member(%s) or not ops.caller_is_end_user()", (org_id,)):
        raise Forbidden("you are not a member of this org", field="org")
    # Decisions for a principal on every governed dataset: "everyone" is a principal holding no group.
    query = (
        "select ops.access_decision_for(d.id, %(kind)s, %(name)s, %(groups)s::text[]) as decision "
        "from ops.datasets d join ops.projects p on p.id = d.project_id "
        "where p.org_id = %(org)s and exists (select 1 from ops.access_policies x where x.org_id = %(org)s "
        "and ops.policy_covers(x, d)) order by d.name, d.id"
    )
    tables: list[dict[str, Any]] = []
    async with conn.cursor(row_factory=dict_row) as rows:
        for kind, name in await _principals(conn, org_id):
            args = {"org": org_id, "kind": kind, "name": name, "groups": []}
            if kind == "group":
                args.update(kind="service_principal", name=f"(group {name})", groups=[name])
            await rows.execute(query, args)
            for row in await rows.fetchall():
                rule = _table_rule(row["decision"], catalog)
                tables.append({"group" if kind == "group" else "user": _exact(name), **rule})
        await rows.execute(query, {"org": org_id, "kind": "service_principal", "name": "(everyone)", "groups": []})
        tables.extend(_table_rule(row["decision"], catalog) for row in await rows.fetchall())
    tables.append({"privileges": WRITE_PRIVILEGES})  # tables no policy governs
    return {"catalogs": [{"catalog": _exact(catalog), "allow": "all"}], "tables": tables}
