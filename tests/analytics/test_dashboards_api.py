"""Dashboards over HTTP and the CLI: templates, clone, save a version (errors name the path), data as the caller."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from control_room.services import dashboards
from tests.bundle.conftest import CliResult, lakehouse
from tests.integration.factories import make_tenant, submit, task
from tests.live import LiveServer, Provisioner

__all__ = ["lakehouse"]  # the real CLI fixture, shared with the bundle tests
API = "/api/v1"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_clone_save_and_read_data_over_http(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant(f"dash-{uuid.uuid4().hex[:6]}")
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        submit(conn, tenant, [task("a")], name="dashboard api run")
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])
    project = {"project": str(tenant.project_id)}

    names = [t["name"] for t in viewer.get("/dashboard-templates").json()]
    assert "run-health" in names
    cloned = operator.post("/dashboards", params=project, json={"template": "run-health", "slug": "health"})
    assert cloned.status_code == 201, cloned.text
    assert cloned.json()["version"] == 1

    bad = operator.put("/dashboards/health", params=project, json={"source_yaml": "title: x\ndatasets: {a: {sql: "
                       "select 1}}\ncharts: [{id: c, title: t, type: donut, dataset: a}]"})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "charts[0].type", bad.text
    edited = dashboards.template_yaml("run-health").replace("title: Run health", "title: Health", 1)
    refused = viewer.put("/dashboards/health", params=project, json={"source_yaml": edited})
    assert refused.status_code == 403, refused.text
    saved = operator.put("/dashboards/health", params=project, json={"source_yaml": edited, "expected_version": 1})
    assert saved.json()["version"] == 2, saved.text

    listed = viewer.get("/dashboards", params=project).json()
    assert [(d["slug"], d["title"], d["latest_version"], d["template"]) for d in listed] == [
        ("health", "Health", 2, "run-health")
    ]
    assert set(listed[0]) == {"id", "slug", "title", "template", "latest_version", "created_by", "updated_at"}
    detail = viewer.get("/dashboards/health", params=project).json()
    assert detail["title"] == "Health" and [v["version"] for v in detail["versions"]] == [2, 1]
    data = {d["name"]: d for d in viewer.get("/dashboards/health/data", params=project).json()}
    assert sum(row[1] for row in data["runs_per_day"]["rows"]) == 1

    stranger = client(live_api, provision.user_token("admin", provision.tenant(f"other-{uuid.uuid4().hex[:6]}"))[1])
    assert stranger.get("/dashboards", params=project).json() == []
    assert stranger.get("/dashboards/health", params=project).status_code == 404


def test_cli_clones_saves_and_shows(lakehouse: Callable[..., CliResult], database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        tenant = make_tenant(conn)
    slug = str(tenant.project_id)
    assert lakehouse("dashboards", "templates").stdout.count("\n") == 5
    cloned = lakehouse("dashboards", "clone", "--project", slug, "caps-and-cost", "costs")
    assert cloned.exit_code == 0 and "version 1" in cloned.stdout, cloned
    broken = tmp_path / "broken.yaml"
    broken.write_text("title: x\ndatasets: {}\ncharts: []\n")
    failed = lakehouse("dashboards", "save", "--project", slug, "costs", str(broken))
    assert failed.exit_code == 1 and "charts" in failed.stderr
    good = tmp_path / "good.yaml"
    good.write_text(dashboards.template_yaml("caps-and-cost").replace("title: Caps and cost", "title: Costs", 1))
    assert "version 2" in lakehouse("dashboards", "save", "--project", slug, "costs", str(good)).stdout
    assert "Costs" in lakehouse("dashboards", "list", "--project", slug).stdout
    assert lakehouse("dashboards", "show", "--project", slug, "costs", "--version", "1").stdout.startswith(
        "title: Caps and cost"
    )
