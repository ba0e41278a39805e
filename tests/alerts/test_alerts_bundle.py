"""The bundle round trip of alert rules with issue 20's kinds and fields: deploy, read back, plan empty."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from control_room.bundle import DEMO_BUNDLE_DIR
from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle, live_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.models import sorted_bundle
from control_room.bundle.source import InvalidInput
from control_room.db.migrate import migrate
from control_room.services.demo import load_demo_data

NEW_RULES = """
  - name: nightly-sla
    kind: sla
    match:
      project: lakehouse
      template: nightly-ingest
    sla_time: "06:30"
    sla_timezone: Europe/Paris
    severity: critical
    escalate_after_s: 300
  - name: slow-vs-history
    kind: run_duration
    threshold: 7200
    factor: 2.5
    baseline_runs: 30
  - name: quality-errors
    kind: event_match
    event_type: quality.check
    event_level: error
    event_attributes:
      check: nulls
  - name: features-fresh
    kind: dataset_freshness
    dataset_name: features.customer_daily
    threshold: 7200
  - name: spark-pool-down
    kind: executor_offline
    match:
      pool: spark
    cap_percent: 90
"""


def test_new_rule_fields_round_trip(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    url = fresh_database()
    migrate(url)
    assert load_demo_data(url) is True
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE_DIR, bundle_dir)
    alerts = bundle_dir / "alerts.yaml"
    alerts.write_text(alerts.read_text(encoding="utf-8").rstrip("\n") + "\n" + NEW_RULES, encoding="utf-8")
    loaded = load_bundle(bundle_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        assert not plan_bundle(conn, loaded).is_empty
        deploy_bundle(conn, loaded, actor="tests")
        assert plan_bundle(conn, load_bundle(bundle_dir)).is_empty
        assert sorted_bundle(live_bundle(conn, "demo")) == sorted_bundle(loaded.bundle)
        row = conn.execute(
            "select sla_time::text, sla_timezone, escalate_after_s from ops.alert_rules where name = 'nightly-sla'"
        ).fetchone()
        assert row == ("06:30:00", "Europe/Paris", 300)
        attrs = conn.execute("select event_attributes from ops.alert_rules where name = 'quality-errors'").fetchone()
        assert attrs == ({"check": "nulls"},)


CHANNELS = """
alert_channels:
  - name: data-incidents
    kind: slack
    url_env: SLACK_DATA_INCIDENTS_URL
  - name: pager
    kind: webhook
    url_env: PAGER_WEBHOOK_URL
    secret_env: PAGER_WEBHOOK_SECRET
  - name: oncall-mail
    kind: email
    address: oncall@demo.example
"""


def test_alert_channels_round_trip_with_secrets_as_environment_variable_names(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    url = fresh_database()
    migrate(url)
    assert load_demo_data(url) is True
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE_DIR, bundle_dir)
    # In place of the demo's two Slack channels: data-incidents changes, data-platform goes, two are new.
    channels = bundle_dir / "alert_channels.yaml"
    channels.write_text(CHANNELS, encoding="utf-8")
    with psycopg.connect(url, autocommit=True) as conn:
        plan = plan_bundle(conn, load_bundle(bundle_dir))
        assert sorted((c.key, c.action) for c in plan.changes if c.section == "alert_channels") == [
            ("data-incidents", "update"), ("data-platform", "delete"), ("oncall-mail", "create"), ("pager", "create"),
        ]  # fmt: skip
        deploy_bundle(conn, load_bundle(bundle_dir), actor="tests")
        assert plan_bundle(conn, load_bundle(bundle_dir)).is_empty
        rows = conn.execute("select name, kind, url_env, secret_env from ops.alert_channels order by name").fetchall()
        assert ("pager", "webhook", "PAGER_WEBHOOK_URL", "PAGER_WEBHOOK_SECRET") in rows
        audited = conn.execute(
            "select count(*) from ops.audit_log where entity = 'alert_channels' and actor = 'tests'"
        ).fetchone()
        assert audited == (4,)
        exported = tmp_path / "exported"
        export_bundle(conn, "demo", exported)
        text = (exported / "alert_channels.yaml").read_text(encoding="utf-8")
        assert "PAGER_WEBHOOK_SECRET" in text and "http" not in text  # names of variables, never values
        assert plan_bundle(conn, load_bundle(exported)).is_empty
        # Removing a channel from the bundle deletes it.
        channels.write_text(CHANNELS.split("  - name: pager")[0], encoding="utf-8")
        deploy_bundle(conn, load_bundle(bundle_dir), actor="tests")
        names = [n for (n,) in conn.execute("select name from ops.alert_channels order by name")]
        assert names == ["data-incidents"]


def test_a_channel_with_a_secret_value_instead_of_a_variable_name_is_refused(tmp_path: Path) -> None:
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE_DIR, bundle_dir)
    (bundle_dir / "channels.yaml").write_text(
        "alert_channels:\n  - name: leak\n    kind: slack\n    url_env: https://hooks.slack.com/services/T0/B0/xyz\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput, match=r"channels\.yaml:4: alert_channels\[0\]\.url_env"):
        load_bundle(bundle_dir)
    (bundle_dir / "channels.yaml").write_text("alert_channels:\n  - name: nourl\n    kind: webhook\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="needs url_env"):
        load_bundle(bundle_dir)
