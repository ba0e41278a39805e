"""Scheduler policies in the GitOps bundle (optional fields, round trip), and the demo's every-minute
schedule firing within two minutes of a deploy (driven clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import live_bundle
from control_room.bundle.loader import load_bundle
from tests.bundle.conftest import copy_bundle, make_demo_like_org
from tests.jobs.conftest import tick

DEMO_SCHEDULE = "feature-freshness-every-minute"


def test_policies_deploy_export_and_change_like_any_field(conn: psycopg.Connection, tmp_path: Path) -> None:
    org = make_demo_like_org(conn)
    bundle_dir = copy_bundle(tmp_path / "bundle", org.slug)
    deploy_bundle(conn, load_bundle(bundle_dir), actor="test")
    rows = dict(
        conn.execute(
            "select name, (catchup, catchup_limit, overlap, jitter_s, misfire_grace_s)::text from ops.schedules "
            "where org_id = %s",
            (org.org_id,),
        ).fetchall()
    )
    assert rows[DEMO_SCHEDULE] == "(latest,10,skip,0,60)"
    assert rows["dbt-build-hourly"] == "(latest,10,allow,0,60)"  # a schedule without policies gets the defaults
    exported = {s.name: s for s in live_bundle(conn, org.slug).schedules}
    assert exported[DEMO_SCHEDULE].overlap == "skip" and exported[DEMO_SCHEDULE].catchup == "latest"
    assert plan_bundle(conn, load_bundle(bundle_dir)).is_empty

    demo_file = bundle_dir / "schedules-demo.yaml"
    changed = demo_file.read_text(encoding="utf-8").replace("    overlap: skip\n", "    overlap: queue_one\n")
    demo_file.write_text(changed.replace("    catchup: latest\n", "    catchup: latest\n    jitter_s: 5\n"), "utf-8")
    plan = plan_bundle(conn, load_bundle(bundle_dir))
    assert not plan.is_empty
    deploy_bundle(conn, load_bundle(bundle_dir), actor="test")
    row = conn.execute(
        "select overlap, jitter_s from ops.schedules where org_id = %s and name = %s", (org.org_id, DEMO_SCHEDULE)
    ).fetchone()
    assert row == ("queue_one", 5)


def test_the_demo_schedule_fires_within_two_minutes_of_a_deploy(
    conn: psycopg.Connection, jobs_db: str, tmp_path: Path
) -> None:
    org = make_demo_like_org(conn)
    deploy_bundle(conn, load_bundle(copy_bundle(tmp_path / "bundle", org.slug)), actor="test")
    started = datetime(2026, 12, 3, 22, 0, 25, tzinfo=UTC)
    tick(jobs_db, started)  # the control room starts: every schedule gets its next fire
    tick(jobs_db, started + timedelta(seconds=36))  # 22:01:01
    runs = conn.execute(
        "select r.name, r.trigger, e.name, r.params ->> 'logical_date' from ops.runs r "
        "join ops.schedules s on s.id = r.schedule_id join ops.environments e on e.id = r.environment_id "
        "where s.org_id = %s",
        (org.org_id,),
    ).fetchall()
    assert runs == [("feature-freshness", "schedule", "dev", "2026-12-03T22:01:00+00:00")]
