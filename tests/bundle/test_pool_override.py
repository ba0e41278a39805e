"""The routing rule's `allow_pool_override` travels through the bundle: deployed to the column that routing
reads, exported back, and off unless the bundle says so."""

from __future__ import annotations

from pathlib import Path

import psycopg

from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.export import live_bundle
from control_room.bundle.loader import load_bundle
from tests.bundle.conftest import DemoLikeOrg, edit


def test_allow_pool_override_is_deployed_and_exported(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    edit(bundle_dir / "routing.yaml", "    position: 1000\n    pool: default\n",
         "    position: 1000\n    pool: default\n    allow_pool_override: true\n")  # fmt: skip
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    rows = dict(
        db.execute(
            "select name, allow_pool_override from ops.routing_rules where org_id = %s", (org.org_id,)
        ).fetchall()
    )
    assert rows["catch-all"] is True
    assert [name for name, allowed in rows.items() if allowed] == ["catch-all"], "off unless the bundle says so"
    exported = {rule.name: rule.allow_pool_override for rule in live_bundle(db, org.slug).routing_rules}
    assert exported["catch-all"] is True and exported["prod-spark"] is False
