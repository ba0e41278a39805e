"""Services return whole table rows as the SQLModel classes of control_room/db/tables.py (validated psycopg rows)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pydantic import ValidationError

from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.loader import load_bundle
from control_room.db import tables
from control_room.db.rows import model_rows
from control_room.services import bundles
from tests.bundle.conftest import DemoLikeOrg


def test_bundle_tables_come_back_as_their_table_models(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    loaded = load_bundle(bundle_dir)
    deploy_bundle(db, loaded, actor="test")

    rules = bundles.live_rows(db, "routing_rules", org.org_id)
    assert rules and all(isinstance(rule, tables.RoutingRule) for rule in rules)
    assert [rule.name for rule in rules] == [
        rule.name for rule in sorted(loaded.bundle.routing_rules, key=lambda r: r.position)
    ]
    assert all(rule.org_id == org.org_id for rule in rules)
    caps = bundles.live_rows(db, "caps", org.org_id)
    assert {cap.name: cap.limit_value for cap in caps} == {cap.name: cap.limit for cap in loaded.bundle.caps}
    alerts = bundles.live_rows(db, "alert_rules", org.org_id)
    assert all(isinstance(alert, tables.AlertRule) and alert.created_at is not None for alert in alerts)


def test_a_row_that_does_not_fit_its_model_is_refused(db: psycopg.Connection) -> None:
    # The factory validates: a value of the wrong type never becomes a typed row silently.
    with db.cursor(row_factory=model_rows(tables.Org)) as cur:
        cur.execute("select gen_random_uuid() as id, 'x' as slug, 'x' as name, 'not a time' as created_at")
        with pytest.raises(ValidationError, match="created_at"):
            cur.fetchall()
