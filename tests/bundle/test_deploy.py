"""Bundles against a live control plane: plan, deploy (one transaction, idempotent), export round trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from control_room.bundle import DEMO_BUNDLE_DIR
from control_room.bundle.access import ACCESS_SECTIONS
from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle, live_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.models import sorted_bundle
from control_room.bundle.plan import Change, FieldChange
from control_room.bundle.source import InvalidInput
from control_room.db.migrate import migrate
from control_room.services.demo import load_demo_data
from tests.bundle.conftest import CliResult, DemoLikeOrg, copy_bundle, edit, line_of

CONFIG_TABLES = (
    "routing_rules", "caps", "job_templates", "schedules", "alert_rules", "alert_channels", "promotion_gates",
    "serving_endpoints",
)  # fmt: skip


def snapshot(conn: psycopg.Connection, org: DemoLikeOrg) -> dict[str, Any]:
    """Every configuration row of the org (all columns, updated_at included), versions and audit rows."""
    state: dict[str, Any] = {}
    for table in CONFIG_TABLES:
        rows = conn.execute(
            f"select to_jsonb(t) from ops.{table} t where org_id = %s order by id", (org.org_id,)
        ).fetchall()
        state[table] = [r[0] for r in rows]
    state["versions"] = conn.execute(
        "select count(*) from ops.job_template_versions v join ops.job_templates t on t.id = v.template_id "
        "where t.org_id = %s",
        (org.org_id,),
    ).fetchone()
    state["audit"] = conn.execute(
        "select count(*) from ops.audit_log where detail ->> 'source' = 'bundle' and entity_id in ("
        + " union all ".join(f"select id from ops.{t} where org_id = %s" for t in CONFIG_TABLES)
        + ")",
        (org.org_id,) * len(CONFIG_TABLES),
    ).fetchone()
    return state


def test_plan_against_an_empty_org_creates_everything(db: psycopg.Connection, bundle_dir: Path) -> None:
    loaded = load_bundle(bundle_dir)

    plan = plan_bundle(db, loaded)

    expected = sum(len(getattr(loaded.bundle, section)) for section in (*CONFIG_TABLES, *ACCESS_SECTIONS))
    # Every project has settings already: the demo's ml retention (90 days, not the default 30) is an update.
    assert [c.action for c in plan.changes] == ["create"] * expected + ["update"]
    assert plan.counts() == {"create": expected, "update": 1, "delete": 0}
    assert plan.changes[-1] == Change("settings", "ml", "update", (FieldChange("event_retention_days", 30, 90),))
    assert Change("job_templates", "lakehouse/nightly-ingest", "create", note="version 1") in plan.changes


def test_plan_shows_exactly_the_changed_rows(
    db: psycopg.Connection, bundle_dir: Path, lakehouse: Callable[..., CliResult]
) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    edit(bundle_dir / "caps.yaml", "    limit: 16\n", "    limit: 24\n")
    edit(
        bundle_dir / "routing.yaml",
        "  - name: catch-all\n",
        "  - name: gpu-training\n    position: 50\n    match:\n      labels: [gpu]\n    pool: gpu\n"
        "  - name: catch-all\n",
    )
    alerts = bundle_dir / "alerts.yaml"
    text = alerts.read_text(encoding="utf-8")
    alerts.write_text(text[: text.index("  - name: queue-backlog")] + text[text.index("  - name: cap-breached") :])
    edit(
        bundle_dir / "job_templates" / "lakehouse" / "nightly-ingest.yaml",
        "    timeout_s: 1800\n",
        "    timeout_s: 2400\n",
    )

    plan = plan_bundle(db, load_bundle(bundle_dir))

    assert plan.changes == (
        Change("routing_rules", "gpu-training", "create"),
        Change("caps", "lakehouse-concurrency", "update", (FieldChange("limit", 16, 24),)),
        Change(
            "job_templates",
            "lakehouse/nightly-ingest",
            "update",
            (FieldChange("timeout_s", 1800, 2400),),
            note="new version 2",
        ),
        Change("alert_rules", "queue-backlog", "delete"),
    )
    shown = lakehouse("bundle", "plan", str(bundle_dir))
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "routing_rules:",
        "  + gpu-training",
        "caps:",
        "  ~ lakehouse-concurrency",
        "      limit: 16 -> 24",
        "job_templates:",
        "  ~ lakehouse/nightly-ingest  (new version 2)",
        "      timeout_s: 1800 -> 2400",
        "alert_rules:",
        "  - queue-backlog",
        "Plan: 1 to create, 2 to update, 1 to delete.",
    ]
    as_json = lakehouse("bundle", "plan", str(bundle_dir), "--format", "json", "--detailed-exitcode")
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["counts"] == {"create": 1, "update": 2, "delete": 1}

    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty
    versions = db.execute(
        "select v.version, v.timeout_s from ops.job_template_versions v "
        "join ops.job_templates t on t.id = v.template_id join ops.orgs o on o.id = t.org_id "
        "where o.slug = %s and t.name = 'nightly-ingest' order by v.version",
        (load_bundle(bundle_dir).bundle.org,),
    ).fetchall()
    assert versions == [(1, 1800), (2, 2400)], "a changed definition is a new version; the old one stays"


def test_second_deploy_changes_nothing(db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path) -> None:
    loaded = load_bundle(bundle_dir)
    first = deploy_bundle(db, loaded, actor="test")
    assert not first.is_empty
    after_first = snapshot(db, org)
    # Access policies' changes are audited by their own SQL functions (tests/bundle/test_access_bundle.py);
    # project settings' on the project (tests/bundle/test_settings_bundle.py).
    config_changes = [c for c in first.changes if c.section not in (*ACCESS_SECTIONS, "settings")]
    assert after_first["audit"] == (len(config_changes),), "every change is audited"

    second = deploy_bundle(db, load_bundle(bundle_dir), actor="test")

    assert second.is_empty
    assert snapshot(db, org) == after_first, "no row, version, timestamp or audit entry changed"


def test_export_validates_and_plans_no_diff(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, tmp_path: Path, lakehouse: Callable[..., CliResult]
) -> None:
    source = load_bundle(bundle_dir)
    deploy_bundle(db, source, actor="test")

    exported = lakehouse("bundle", "export", str(tmp_path / "export"), "--org", org.slug)
    assert exported.exit_code == 0, exported.stderr
    validated = lakehouse("bundle", "validate", str(tmp_path / "export"))
    assert validated.exit_code == 0, validated.stderr
    planned = lakehouse("bundle", "plan", str(tmp_path / "export"), "--detailed-exitcode")
    assert planned.exit_code == 0, planned.stdout
    assert planned.stdout.strip() == f"No changes: the control plane of org {org.slug} matches the bundle."

    # The export says the same as the source bundle, and exporting again gives the same bytes.
    assert sorted_bundle(load_bundle(tmp_path / "export").bundle) == sorted_bundle(source.bundle)
    export_bundle(db, org.slug, tmp_path / "again")
    first = {p.relative_to(tmp_path / "export"): p.read_bytes() for p in (tmp_path / "export").rglob("*.yaml")}
    again = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*.yaml")}
    assert first == again
    assert Path("job_templates/lakehouse/nightly-ingest.yaml") in first

    refused = lakehouse("bundle", "export", str(tmp_path / "export"), "--org", org.slug)
    assert refused.exit_code == 1 and "--force" in refused.stderr


def test_deploy_is_one_transaction(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    url = fresh_database()
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        from tests.bundle.conftest import make_demo_like_org

        org = make_demo_like_org(conn)
        bundle_dir = copy_bundle(tmp_path / "bundle", org.slug)
        # Alert rules are written after routing, caps, templates and schedules: make that write fail.
        conn.execute(
            "create function ops.test_refuse_alerts() returns trigger language plpgsql as $$ "
            "begin raise exception 'alert store unavailable'; end $$"
        )
        conn.execute(
            "create trigger test_refuse_alerts before insert on ops.alert_rules "
            "for each row execute function ops.test_refuse_alerts()"
        )

        with pytest.raises(psycopg.errors.RaiseException, match="alert store unavailable"):
            deploy_bundle(conn, load_bundle(bundle_dir), actor="test")

        assert snapshot(conn, org) == {table: [] for table in CONFIG_TABLES} | {"versions": (0,), "audit": (0,)}


def test_reordering_and_renaming_routing_rules(db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    routing = bundle_dir / "routing.yaml"
    edit(routing, "    position: 10\n", "    position: 20\n")  # prod-spark takes dbt-models' place ...
    edit(
        routing, "  - name: dbt-models\n    position: 20\n", "  - name: dbt-models\n    position: 10\n"
    )  # ... and back
    edit(routing, "  - name: sql-warehouse\n    position: 30\n", "  - name: duckdb-warehouse\n    position: 30\n")

    plan = deploy_bundle(db, load_bundle(bundle_dir), actor="test")

    assert {(c.key, c.action) for c in plan.changes} == {
        ("prod-spark", "update"),
        ("dbt-models", "update"),
        ("sql-warehouse", "delete"),
        ("duckdb-warehouse", "create"),
    }
    rows = db.execute(
        "select name, position from ops.routing_rules where org_id = %s order by position", (org.org_id,)
    ).fetchall()
    assert rows[:3] == [("dbt-models", 10), ("prod-spark", 20), ("duckdb-warehouse", 30)]


def test_removed_template_is_archived_with_its_versions_and_restored(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    template = bundle_dir / "job_templates" / "ml" / "train-churn-model.yaml"
    kept = template.read_text(encoding="utf-8")
    template.unlink()
    schedules, gates = bundle_dir / "schedules.yaml", bundle_dir / "promotion_gates.yaml"
    schedules_text, gates_text = schedules.read_text(encoding="utf-8"), gates.read_text(encoding="utf-8")
    schedules.write_text(schedules_text[: schedules_text.index("  - project: ml")], encoding="utf-8")
    gates.write_text(gates_text[: gates_text.index("  - project: ml")], encoding="utf-8")

    plan = deploy_bundle(db, load_bundle(bundle_dir), actor="test")

    assert {(c.section, c.key, c.action) for c in plan.changes} == {
        ("job_templates", "ml/train-churn-model", "delete"),
        ("schedules", "ml/churn-model-weekly", "delete"),
        ("promotion_gates", "ml/churn-model-to-prod", "delete"),
    }
    row = db.execute(
        "select t.archived_at is not null, count(v.*) from ops.job_templates t "
        "join ops.job_template_versions v on v.template_id = t.id where t.org_id = %s and t.name = 'train-churn-model' "
        "group by t.archived_at",
        (org.org_id,),
    ).fetchone()
    assert row == (True, 1)
    assert "ml/train-churn-model" not in {f"{t.project}/{t.name}" for t in live_bundle(db, org.slug).job_templates}

    template.write_text(kept, encoding="utf-8")
    schedules.write_text(schedules_text, encoding="utf-8")
    gates.write_text(gates_text, encoding="utf-8")
    restore = deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert (
        Change("job_templates", "ml/train-churn-model", "create", note="restored from the archive") in restore.changes
    )
    versions = db.execute(
        "select count(*) from ops.job_template_versions v join ops.job_templates t on t.id = v.template_id "
        "where t.org_id = %s and t.name = 'train-churn-model' and t.archived_at is null",
        (org.org_id,),
    ).fetchone()
    assert versions == (1,), "an unchanged definition comes back as the same version"


def test_unknown_project_and_org_name_file_and_line(db: psycopg.Connection, bundle_dir: Path, tmp_path: Path) -> None:
    caps = bundle_dir / "caps.yaml"
    edit(caps, "    project: ml\n", "    project: mlops\n")

    with pytest.raises(InvalidInput) as caught:
        plan_bundle(db, load_bundle(bundle_dir))
    assert [str(p) for p in caught.value.problems] == [
        f'{caps}:{line_of(caps, "project: mlops")}: caps[5].project: unknown project "mlops" in org '
        f"{load_bundle(bundle_dir).bundle.org} (projects: lakehouse, ml)"
    ]

    elsewhere = copy_bundle(tmp_path / "other", "no-such-org")
    with pytest.raises(InvalidInput) as caught:
        plan_bundle(db, load_bundle(elsewhere))
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{elsewhere / 'bundle.yaml'}:{line_of(elsewhere / 'bundle.yaml', 'org:')}: org: ")
    assert 'org "no-such-org" does not exist on the control plane' in str(problem)


def test_deploy_records_who_changed_what(db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="first")
    edit(bundle_dir / "caps.yaml", "    limit: 4096\n", "    limit: 8192\n")

    deploy_bundle(db, load_bundle(bundle_dir), actor="alice@demo.example")

    rows = db.execute(
        "select a.actor, a.action, a.detail from ops.audit_log a join ops.caps c on c.id = a.entity_id "
        "where a.entity = 'caps' and c.org_id = %s and c.name = 'spark-memory' order by a.id",
        (org.org_id,),
    ).fetchall()
    assert [(actor, action) for actor, action, _ in rows] == [("first", "create"), ("alice@demo.example", "update")]
    assert rows[1][2]["changes"] == [{"field": "limit", "old": 4096, "new": 8192}]


def test_template_versions_are_immutable(db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    with pytest.raises(psycopg.Error) as caught:
        db.execute(
            "update ops.job_template_versions v set timeout_s = 1 from ops.job_templates t "
            "where t.id = v.template_id and t.org_id = %s",
            (org.org_id,),
        )
    assert caught.value.sqlstate == "LH423"


def test_demo_data_is_loaded_from_the_example_bundle(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrate(url)

    assert load_demo_data(url) is True

    with psycopg.connect(url, autocommit=True) as conn:
        assert plan_bundle(conn, load_bundle(DEMO_BUNDLE_DIR)).is_empty
        assert sorted_bundle(live_bundle(conn, "demo")) == sorted_bundle(load_bundle(DEMO_BUNDLE_DIR).bundle)
        actors = conn.execute(
            "select distinct actor from ops.audit_log where detail ->> 'source' = 'bundle'"
        ).fetchall()
        assert actors == [("demo-data",)]
    assert load_demo_data(url) is False
