"""The access endpoints that take the org from the ``org`` query parameter: list, delete and audit, and a 404
that names an org the caller does not belong to."""

from __future__ import annotations

import uuid

import httpx
import psycopg

from tests.live import LiveServer, Provisioner

API = "/api/v1"


def _org_admin(live_api: LiveServer, provision: Provisioner) -> tuple[httpx.Client, str]:
    tenant = provision.tenant(f"access-api-{uuid.uuid4().hex[:6]}")
    user_id, token = provision.user_token("admin", tenant)
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (tenant.org_id, user_id)
        )
    client = httpx.Client(base_url=live_api.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return client, str(tenant.org_id)


def test_groups_and_service_principals_are_listed_and_deleted_in_the_queried_org(
    live_api: LiveServer, provision: Provisioner
) -> None:
    admin, org = _org_admin(live_api, provision)
    assert admin.put("/access/groups/analysts", json={"org": org, "description": "readers"}).status_code == 200
    assert admin.put("/access/service-principals/etl-bot", json={"org": org}).status_code == 200

    assert [g["name"] for g in admin.get("/access/groups", params={"org": org}).json()] == ["analysts"]
    assert [s["name"] for s in admin.get("/access/service-principals", params={"org": org}).json()] == ["etl-bot"]
    assert admin.get("/access/policies", params={"org": org}).json() == []
    assert admin.get("/access/audit", params={"org": org}).status_code == 200

    assert admin.delete("/access/groups/analysts", params={"org": org}).status_code == 204
    assert admin.delete("/access/service-principals/etl-bot", params={"org": org}).status_code == 204
    assert admin.get("/access/groups", params={"org": org}).json() == []
    assert admin.get("/access/service-principals", params={"org": org}).json() == []


def test_an_org_the_caller_does_not_belong_to_is_not_found(live_api: LiveServer, provision: Provisioner) -> None:
    admin, _ = _org_admin(live_api, provision)
    answer = admin.get("/access/groups", params={"org": "no-such-org"})
    assert answer.status_code == 404
    assert answer.json()["detail"] == 'no org "no-such-org" that you belong to: name one with org=<slug>'
    assert answer.json()["field"] == "org"
    assert admin.delete("/access/policies/mask-email", params={"org": "no-such-org"}).status_code == 404
