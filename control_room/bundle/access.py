"""Bundle sections of access policies (issue 22): service principals, groups and policies, read from the live
rows and written through the audited SQL functions the page, API and CLI use. A dataset policy names its
dataset by full name in the bundle (``warehouse.main.customers``) and by id on the control plane."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from control_room.bundle.models import AccessPolicy, Group, GroupMember, ServicePrincipal
from control_room.services import bundles

ACCESS_SECTIONS = ("service_principals", "groups", "access_policies")
_POLICY_FIELDS = ("privilege", "row_filter", "mask_column", "mask_kind", "mask_expression")


class UnknownDataset(ValueError):
    """A dataset policy of the bundle names a dataset the org does not have (yet)."""


def read_service_principal(row: dict[str, Any], _directory: Any, _state: Any) -> ServicePrincipal:
    return ServicePrincipal(name=row["name"], description=row["description"])


def read_group(row: dict[str, Any], _directory: Any, _state: Any) -> Group:
    members = [GroupMember(kind=m["kind"], name=m["name"]) for m in row["members"]]
    return Group(name=row["name"], description=row["description"], members=members)


def read_policy(row: dict[str, Any], _directory: Any, _state: Any) -> AccessPolicy:
    target = row["dataset_name"] if row["target_kind"] == "dataset" and row["dataset_name"] else row["target"]
    return AccessPolicy(
        name=row["name"], kind=row["kind"], target_kind=row["target_kind"], target=target,
        principal_kind=row["principal_kind"], principal=row["principal"], description=row["description"],
        **{f: row[f] for f in _POLICY_FIELDS if row[f] is not None},
    )  # fmt: skip


def _policy_body(conn: psycopg.Connection[Any], org: uuid.UUID, policy: AccessPolicy) -> dict[str, Any]:
    body = policy.model_dump(exclude_none=True)
    if policy.target_kind == "dataset":
        found = bundles.dataset_id_by_name(conn, org, policy.target)
        if found is None:
            raise UnknownDataset(
                f'access_policies: policy "{policy.name}" names dataset {policy.target}, which this org does not have '
                "(give its full name, e.g. warehouse.main.customers, or use target_kind schema)"
            )
        body["target"] = str(found)
    return body


def delete(conn: psycopg.Connection[Any], org: uuid.UUID, section: str, name: str, *, actor: str) -> None:
    bundles.delete_access_item(conn, section, org, name, actor=actor)


def write(
    conn: psycopg.Connection[Any], org: uuid.UUID, section: str, item: Any, row_id: uuid.UUID | None, *, actor: str
) -> uuid.UUID:
    """Create or update one item (``row_id``: the live row of an update); returns its id."""
    if section == "service_principals":
        return bundles.save_service_principal(conn, org, item.model_dump(), actor=actor)
    if section == "groups":
        return bundles.save_group(conn, org, item.model_dump(), actor=actor)
    return bundles.save_access_policy(conn, org, row_id, _policy_body(conn, org, item), actor=actor)
