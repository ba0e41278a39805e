"""Serving endpoints in the GitOps bundle: they deploy (replicas as queued service tasks), a second deploy and
the export plan nothing, a changed split is a new revision and a changed memory cap restarts the replicas, a
removed endpoint is deleted; an edit through the API (start, scale, canary) shows as drift, and deploying
again undoes it. A split that does not add up is refused with its file and line, and a serving replica cap
refuses the whole deploy."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle, live_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.models import sorted_bundle
from control_room.bundle.source import InvalidInput
from control_room.services import governance
from tests.bundle.conftest import DemoLikeOrg, copy_bundle, edit, make_demo_like_org
from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

SCORING = """  - project: ml
    name: scoring
    environment: staging
    model: fraud
    versions:
      - version: 3
        percent: 80
      - version: 4
        percent: 20
    replicas: 2
    pool: gpu-serving
    max_memory_mb: 1024
"""


def endpoint_state(db: psycopg.Connection, org: DemoLikeOrg, name: str) -> tuple[str, int, list[object]] | None:
    row = db.execute(
        "select e.status, e.revision, r.routes from ops.serving_endpoints e join ops.serving_endpoint_revisions r "
        "on r.endpoint_id = e.id and r.revision = e.revision where e.org_id = %s and e.name = %s",
        (org.org_id, name),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def live_replicas(db: psycopg.Connection, org: DemoLikeOrg, name: str) -> list[tuple[str, int, str, str | None]]:
    """(version, index, task status, pool) of the endpoint's replicas that are not retired."""
    rows = db.execute(
        "select s.model_version, s.replica_index, t.status, t.spec ->> 'pool' from ops.serving_replicas s "
        "join ops.serving_endpoints e on e.id = s.endpoint_id join ops.tasks t on t.id = s.task_id "
        "where e.org_id = %s and e.name = %s and s.retired_at is null order by 1, 2",
        (org.org_id, name),
    ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_endpoints_deploy_update_delete_and_export_round_trip(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, tmp_path: Path
) -> None:
    serving = bundle_dir / "serving.yaml"
    edit(serving, "serving_endpoints:\n", "serving_endpoints:\n" + SCORING)
    plan = plan_bundle(db, load_bundle(bundle_dir))
    assert {(c.key, c.action) for c in plan.changes if c.section == "serving_endpoints"} == {
        ("lakehouse/churn-classifier", "create"), ("ml/scoring", "create")
    }  # fmt: skip

    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")

    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty, "a second plan shows no diff"
    split = [{"model": "fraud", "version": "3", "percent": 80}, {"model": "fraud", "version": "4", "percent": 20}]
    assert endpoint_state(db, org, "scoring") == ("running", 1, split)
    assert live_replicas(db, org, "scoring") == [
        ("3", 0, "queued", "gpu-serving"), ("3", 1, "queued", "gpu-serving"),
        ("4", 0, "queued", "gpu-serving"), ("4", 1, "queued", "gpu-serving"),
    ]  # fmt: skip
    # The demo's endpoint waits, stopped, for the model the demo training registers.
    assert endpoint_state(db, org, "churn-classifier") == (
        "stopped", 1, [{"model": "churn-classifier", "version": "1", "percent": 100}]
    )  # fmt: skip
    assert live_replicas(db, org, "churn-classifier") == []

    exported = tmp_path / "exported"
    export_bundle(db, org.slug, exported)
    assert (exported / "serving.yaml").exists()
    assert sorted_bundle(load_bundle(exported).bundle) == sorted_bundle(load_bundle(bundle_dir).bundle)
    assert plan_bundle(db, load_bundle(exported)).is_empty

    # A new split is a new revision; the replicas of the kept versions stay.
    edit(serving, "        percent: 80\n", "        percent: 50\n")
    edit(serving, "        percent: 20\n", "        percent: 50\n")
    [change] = plan_bundle(db, load_bundle(bundle_dir)).changes
    assert (change.key, change.action, change.note) == ("ml/scoring", "update", "new traffic split revision")
    assert [(f.field, f.old, f.new) for f in change.fields] == [
        ("versions[0].percent", 80, 50), ("versions[1].percent", 20, 50)
    ]  # fmt: skip
    before = live_replicas(db, org, "scoring")
    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    state = endpoint_state(db, org, "scoring")
    assert state is not None and state[1] == 2
    assert live_replicas(db, org, "scoring") == before
    action = db.execute(
        "select r.action from ops.serving_endpoint_revisions r join ops.serving_endpoints e on e.id = r.endpoint_id "
        "where e.org_id = %s and r.revision = 2",
        (org.org_id,),
    ).fetchone()
    assert action == ("update",)

    # A new memory cap restarts the replicas (their tasks carry it); one replica per version now.
    edit(serving, "    max_memory_mb: 1024\n", "    max_memory_mb: 512\n")
    edit(serving, "    replicas: 2\n", "")
    [change] = plan_bundle(db, load_bundle(bundle_dir)).changes
    assert change.note == "its replicas restart"
    old_runs = [r[0] for r in db.execute(
        "select s.run_id from ops.serving_replicas s join ops.serving_endpoints e on e.id = s.endpoint_id "
        "where e.org_id = %s and e.name = 'scoring' and s.retired_at is null", (org.org_id,)
    ).fetchall()]  # fmt: skip
    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    assert live_replicas(db, org, "scoring") == [("3", 0, "queued", "gpu-serving"), ("4", 0, "queued", "gpu-serving")]
    memory = db.execute(
        "select distinct (t.spec ->> 'max_memory_mb')::int from ops.serving_replicas s join ops.tasks t "
        "on t.id = s.task_id join ops.serving_endpoints e on e.id = s.endpoint_id "
        "where e.org_id = %s and e.name = 'scoring' and s.retired_at is null",
        (org.org_id,),
    ).fetchall()
    assert memory == [(512,)]
    statuses = db.execute("select distinct status from ops.runs where id = any(%s)", (old_runs,)).fetchall()
    assert statuses == [("cancelled",)], "the replicas started with the old cap are stopped"
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty

    # Removed from the bundle: deleted, its replicas cancelled, audited.
    edit(serving, SCORING.replace("    replicas: 2\n", "").replace("1024", "512").replace("80", "50").replace(
        "20", "50"), "")  # fmt: skip
    [change] = plan_bundle(db, load_bundle(bundle_dir)).changes
    assert (change.key, change.action) == ("ml/scoring", "delete")
    assert "replicas stop" in change.note
    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    assert endpoint_state(db, org, "scoring") is None
    audited = db.execute(
        "select action from ops.audit_log where entity = 'serving_endpoints' and actor = 'tests' "
        "and detail ->> 'name' = 'scoring' order by id"
    ).fetchall()
    assert [a[0] for a in audited] == ["create", "update", "update", "delete"]
    assert [e.name for e in live_bundle(db, org.slug).serving_endpoints] == ["churn-classifier"]


def test_an_api_edit_shows_as_drift_until_the_bundle_is_deployed_again(
    live_api: LiveServer, provision: Provisioner, tmp_path: Path
) -> None:
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        org = make_demo_like_org(db)
        bundle_dir = copy_bundle(tmp_path / "bundle", org.slug)
        deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
        project = db.execute("select id from ops.projects where org_id = %s and slug = 'lakehouse'", (org.org_id,))
        row = project.fetchone()
        assert row
        envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (row[0],)).fetchall())
        _, token = provision.user_token("operator", Tenant(org_id=org.org_id, project_id=row[0], environments=envs))
        assert not governance.drift(db, org=org.slug).has_drift

    api = httpx.Client(
        base_url=f"{live_api.base_url}/api/v1/serving/endpoints/churn-classifier",
        headers={"Authorization": f"Bearer {token}"},
        params={"project": str(row[0])},
        timeout=30,
    )
    for path, body in (("/start", None), ("/scale", {"replicas": 2}), ("/canary", {"version": "2", "percent": 10})):
        answer = api.post(path, json=body)
        assert answer.status_code == 200, answer.text

    with psycopg.connect(provision.database_url, autocommit=True) as db:
        drift = governance.drift(db, org=org.slug)
        assert drift.has_drift
        [line] = drift.lines()
        assert line.startswith("~ serving_endpoints lakehouse/churn-classifier: versions [")
        assert line.endswith(", replicas 1 -> 2, status stopped -> running")
        [change] = drift.plan.changes
        assert change.fields[0].new == [
            {"version": 1, "percent": 90, "model": None}, {"version": 2, "percent": 10, "model": None}
        ]  # fmt: skip
        # Deploying the bundle again puts the endpoint back as the bundle says (a new revision, stopped).
        plan = deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
        assert [(c.key, c.action) for c in plan.changes] == [("lakehouse/churn-classifier", "update")]
        assert not governance.drift(db, org=org.slug).has_drift
        assert endpoint_state(db, org, "churn-classifier") == (
            "stopped", 3, [{"model": "churn-classifier", "version": "1", "percent": 100}]
        )  # fmt: skip
        assert live_replicas(db, org, "churn-classifier") == []


def test_a_split_that_does_not_add_up_names_file_and_line(bundle_dir: Path) -> None:
    serving = bundle_dir / "serving.yaml"
    edit(serving, "serving_endpoints:\n", "serving_endpoints:\n" + SCORING.replace("percent: 20", "percent: 30"))
    with pytest.raises(InvalidInput) as caught:
        load_bundle(bundle_dir)
    [problem] = caught.value.problems
    assert str(problem) == (
        f"{serving}:{_versions_line(serving)}: "
        "serving_endpoints[0].versions: traffic percents must add up to 100, got 80 + 30 = 110"
    )

    edit(serving, "        percent: 30\n", "        percent: 20\n")
    edit(serving, "      - version: 4\n", "      - version: 3\n")
    with pytest.raises(InvalidInput, match=r"versions\[1\]\.version: fraud version 3 is served twice"):
        load_bundle(bundle_dir)


def _versions_line(path: Path) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.strip() == "versions:")


def test_a_serving_replica_cap_refuses_the_whole_deploy(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    edit(bundle_dir / "serving.yaml", "serving_endpoints:\n", "serving_endpoints:\n" + SCORING)
    edit(
        bundle_dir / "caps.yaml",
        "caps:\n",
        "caps:\n  - name: serving-replicas\n    scope: engine\n    engine: serving\n    kind: concurrent_tasks\n"
        "    limit: 3\n",
    )
    with pytest.raises(psycopg.Error, match='cap "serving-replicas" allows 3 serving replicas'):
        deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    assert db.execute("select count(*) from ops.caps where org_id = %s", (org.org_id,)).fetchone() == (0,)
    assert endpoint_state(db, org, "scoring") is None
