"""Access policies: groups, service principals, grants/denies, row filters and column masks on datasets,
schemas and tags; the decisions an SQL task is held to (through the executor contract), the simulator
("can group analysts read column email of orders?" with the reason) and the audit of changes.

Every decision is computed by ``ops.access_decision`` in SQL, one place for the catalog's RLS, the
executor endpoint and the simulator; writes go through the audited SECURITY DEFINER functions of
supabase/migrations/20261206000200_access_policies.sql, called as the acting principal.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from control_room.db.rows import dict_rows, first_dict_row, one_row, returned_id, scalar
from control_room.services.errors import Invalid, LeaseLost, NotFound

PrincipalKind = Literal["user", "service_principal"]
PRIVILEGES = ("read", "write", "admin")
POLICY_COLUMNS = (
    "p.id, p.name, p.kind, p.target_kind, p.target, p.principal_kind, p.principal, p.privilege, p.row_filter, "
    "p.mask_column, p.mask_kind, p.mask_expression, p.description, p.created_by, p.created_at, p.updated_at, "
    "(select d.name from ops.datasets d where d.id::text = p.target and p.target_kind = 'dataset') as dataset_name"
)


def restricts(decision: dict[str, Any]) -> bool:
    """Whether a decision holds anything back: a refused read or write, a row filter or a mask."""
    return (
        not decision.get("read")
        or not decision.get("write")
        or bool(decision.get("row_filters") or decision.get("masks"))
    )


async def act_as(conn: AsyncConnection, actor: str) -> None:
    """Name the trusted caller (e.g. ``cli:alice``) in the audit of this transaction's changes."""
    await conn.execute("select set_config('lakehouse.actor', %s, true)", (actor,))


# Decisions ----------------------------------------------------------------------------------------------


async def decisions(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    principal_kind: PrincipalKind,
    principal: str,
    dataset_ids: list[uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """What the principal may do with each dataset of the project (or those listed), with the reasons."""
    cur = await conn.execute(
        "select ops.access_decisions(%s, %s, %s, %s)", (project_id, principal_kind, principal, dataset_ids)
    )
    return [row[0] for row in await cur.fetchall()]


async def task_policies(conn: AsyncConnection, *, task_id: uuid.UUID, lease_token: uuid.UUID) -> dict[str, Any]:
    """The policies an SQL task is held to, for the agent holding its live lease: who the task acts as (a
    policy preview's principal, its template's service principal, else its requester), its groups, and every
    dataset of the project whose decision restricts it (others are open to it)."""
    row = await first_dict_row(
        conn,
        "select a.kind, a.name, a.groups, a.preview from ops.tasks t cross join lateral ops.task_acts_as(t.id) a "
        "where t.id = %s and t.lease_token = %s and t.status in ('claimed', 'running')",
        (task_id, lease_token),
    )
    if row is None:
        raise LeaseLost(f"lease token does not hold task {task_id} (expired, finalized or reassigned)")
    cur2 = await conn.execute("select ops.task_access_decisions(%s)", (task_id,))
    found = [r[0] for r in await cur2.fetchall()]
    return {
        "principal": {"kind": row["kind"], "name": row["name"]},
        "groups": list(row["groups"]),
        "datasets": [d for d in found if restricts(d)],
        "read_only": bool(row["preview"]),
    }


@dataclass(frozen=True)
class Verdict:
    """The simulator's answer: allowed or not, and why (naming the deciding policy)."""

    allowed: bool
    reason: str
    dataset: str
    mask: str | None = None
    row_filters: tuple[str, ...] = ()


async def _dataset_id(conn: AsyncConnection, project_id: uuid.UUID, dataset: str) -> uuid.UUID:
    cur = await conn.execute(
        "select d.id from ops.datasets d where d.project_id = %s and (d.id::text = %s or lower(d.name) = lower(%s) "
        "or lower(d.name) like '%%.' || lower(%s)) order by length(d.name), d.id limit 2",
        (project_id, dataset, dataset, dataset),
    )
    rows = await cur.fetchall()
    if not rows:
        raise NotFound(
            f'no dataset "{dataset}" in this project (give its id or name, e.g. main.orders)', field="dataset"
        )
    return uuid.UUID(str(rows[0][0]))


async def simulate(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    principal_kind: PrincipalKind | Literal["group"],
    principal: str,
    dataset: str,
    privilege: str = "read",
    column: str | None = None,
) -> Verdict:
    """Can the principal (a user, service principal or group) use ``privilege`` on the dataset (and read
    ``column`` unmasked)? A group is simulated as a member holding no other group."""
    if privilege not in PRIVILEGES:
        raise Invalid("one of read, write, admin", field="privilege")
    dataset_id = await _dataset_id(conn, project_id, dataset)
    if principal_kind == "group":
        decision = await scalar(
            conn,
            "select ops.access_decision_for(%s, 'service_principal', %s, array[%s]::text[])",
            (dataset_id, f"(a member of group {principal})", principal),
        )
        found = [decision] if decision else []
    else:
        found = await decisions(
            conn, project_id=project_id, principal_kind=principal_kind, principal=principal, dataset_ids=[dataset_id]
        )
    if not found:
        raise NotFound(f"dataset {dataset} is not visible to you", field="dataset")
    decision = found[0]
    filters = tuple(f"{f['predicate']} (policy {f['policy']})" for f in decision["row_filters"])
    allowed = bool(decision[privilege])
    reason = str(decision["reasons"][privilege])
    mask = None
    if column is not None and allowed and privilege == "read":
        hit = next((m for m in decision["masks"] if str(m["column"]).lower() == column.lower()), None)
        if hit is not None:
            mask = f"{hit['kind']}" + (f" ({hit['expression']})" if hit.get("expression") else "")
            reason = f'{reason}; column {column} is masked ({mask}) by policy "{hit["policy"]}"'
    if allowed and filters:
        reason = f"{reason}; rows are filtered by {'; '.join(filters)}"
    return Verdict(allowed, reason, str(decision["name"]), mask, filters)


@dataclass(frozen=True)
class EditorRights:
    """What the caller may edit on the Policies page (the SQL functions check each write again)."""

    org_admin: bool
    owns_datasets: bool

    @property
    def edits_policies(self) -> bool:
        return self.org_admin or self.owns_datasets


async def editor_rights(conn: AsyncConnection, *, org_id: uuid.UUID) -> EditorRights:
    """Org admins edit every policy and group; a dataset's owner edits its dataset's policies."""
    row = await one_row(
        conn,
        "select coalesce(ops.org_role(%s), '') = 'admin' or not ops.caller_is_end_user(), "
        "exists (select 1 from ops.datasets d join ops.projects p on p.id = d.project_id where p.org_id = %s "
        "and lower(d.owner) = lower(ops.caller_email()))",
        (org_id, org_id),
    )
    return EditorRights(bool(row[0]), bool(row[1]))


# Reading and writing the model ----------------------------------------------------------------------------


async def dataset_target(conn: AsyncConnection, *, org_id: uuid.UUID, dataset: str) -> str:
    """The id (as a policy's target) of the org's dataset named by id or name (``main.orders`` matches
    ``warehouse.main.orders``); an error names the choices when the name is ambiguous."""
    cur = await conn.execute(
        "select d.id, d.name from ops.datasets d join ops.projects p on p.id = d.project_id where p.org_id = %s "
        "and (d.id::text = %s or lower(d.name) = lower(%s) or lower(d.name) like '%%.' || lower(%s)) "
        "order by d.name limit 6",
        (org_id, dataset, dataset, dataset),
    )
    rows = await cur.fetchall()
    if not rows:
        raise NotFound(f'no dataset "{dataset}" in this org (give its id or name, e.g. main.orders)', field="target")
    if len(rows) > 1 and not any(str(r[0]) == dataset or str(r[1]).lower() == dataset.lower() for r in rows):
        names = ", ".join(str(r[1]) for r in rows[:5])
        raise Invalid(f'"{dataset}" names several datasets ({names}): give the full name or the id', field="target")
    exact = next((r for r in rows if str(r[0]) == dataset or str(r[1]).lower() == dataset.lower()), rows[0])
    return str(exact[0])


async def list_policies(conn: AsyncConnection, *, org_id: uuid.UUID, target: str | None = None) -> list[dict[str, Any]]:
    """The org's policies (those on one target when given), by name."""
    where = "p.org_id = %s" + (" and p.target = %s" if target else "")
    args: tuple[Any, ...] = (org_id, target) if target else (org_id,)
    return await dict_rows(
        conn, f"select {POLICY_COLUMNS} from ops.access_policies p where {where} order by p.name", args
    )


async def save_policy(
    conn: AsyncConnection, *, org_id: uuid.UUID, body: dict[str, Any], policy_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Create or update a policy (validated and audited in SQL); its id."""
    return await returned_id(conn, "select ops.save_access_policy(%s, %s, %s)", (org_id, policy_id, Jsonb(body)))


async def delete_policy(conn: AsyncConnection, *, org_id: uuid.UUID, name: str) -> None:
    await conn.execute("select ops.delete_access_policy(%s, %s)", (org_id, name))


async def list_groups(conn: AsyncConnection, *, org_id: uuid.UUID) -> list[dict[str, Any]]:
    """The org's groups with their members (``[{"kind", "name"}]``), by name."""
    return await dict_rows(
        conn,
        "select g.id, g.name, g.description, coalesce((select jsonb_agg(jsonb_build_object('kind', m.member_kind, "
        "'name', m.member) order by m.member_kind, m.member) from ops.principal_group_members m "
        "where m.group_id = g.id), '[]') as members from ops.principal_groups g where g.org_id = %s order by g.name",
        (org_id,),
    )


async def save_group(
    conn: AsyncConnection, *, org_id: uuid.UUID, name: str, description: str, members: list[dict[str, str]]
) -> uuid.UUID:
    return await returned_id(
        conn, "select ops.save_principal_group(%s, %s, %s, %s)", (org_id, name, description, json.dumps(members))
    )


async def delete_group(conn: AsyncConnection, *, org_id: uuid.UUID, name: str) -> None:
    await conn.execute("select ops.delete_principal_group(%s, %s)", (org_id, name))


async def list_service_principals(conn: AsyncConnection, *, org_id: uuid.UUID) -> list[dict[str, Any]]:
    return await dict_rows(
        conn,
        "select s.id, s.name, s.description, s.created_at from ops.service_principals s where s.org_id = %s "
        "order by s.name",
        (org_id,),
    )


async def save_service_principal(conn: AsyncConnection, *, org_id: uuid.UUID, name: str, description: str) -> uuid.UUID:
    return await returned_id(conn, "select ops.save_service_principal(%s, %s, %s)", (org_id, name, description))


async def delete_service_principal(conn: AsyncConnection, *, org_id: uuid.UUID, name: str) -> None:
    await conn.execute("select ops.delete_service_principal(%s, %s)", (org_id, name))


async def set_run_as(conn: AsyncConnection, *, template_id: uuid.UUID, service_principal: str | None) -> None:
    """Make a job template's runs act as a service principal (None: as their requester)."""
    await conn.execute("select ops.set_job_template_run_as(%s, %s)", (template_id, service_principal))


async def audit(conn: AsyncConnection, *, org_id: uuid.UUID, limit: int = 50) -> list[dict[str, Any]]:
    """The latest changes to the org's groups, service principals and policies, and the refusals of the agents'
    access guards (entity ``access_refusals``: an org admin sees all, a user their own), newest first."""
    return await dict_rows(conn, "select * from ops.access_audit(%s, %s)", (org_id, limit))


async def refusals(conn: AsyncConnection, *, org_id: uuid.UUID, limit: int = 100) -> list[dict[str, Any]]:
    """The statements the agents refused for a missing privilege (who, which dataset and privilege, which
    policy or "no grant", when, which run and task), newest first; RLS: org admins all, users their own."""
    return await dict_rows(
        conn,
        "select r.id, r.at, r.principal_kind, r.principal, r.dataset, r.dataset_id, r.privilege, "
        "coalesce(r.policy, 'no grant') as policy, r.reason, r.run_id, r.task_id, r.attempt "
        "from ops.access_refusals r where r.org_id = %s order by r.id desc limit %s",
        (org_id, max(1, min(limit, 500))),
    )
