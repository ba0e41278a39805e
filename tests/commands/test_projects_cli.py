"""`lakehouse projects retention|archive-events`: show and set a project's event retention (audited, by the
CLI's user), and archive the runs past it on demand into the configured artifact store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from control_room.db.migrate import migrate
from tests.conftest import PostgresServer
from tests.integration.factories import finished_run, make_tenant

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
pytestmark = pytest.mark.migrations


def test_retention_is_shown_set_and_applied(pg_server: PostgresServer, tmp_path: Path) -> None:
    url = pg_server.create_database("lh_projects_cli")  # archive-events archives every due run of its database
    migrate(url)
    env = {**os.environ, "LAKEHOUSE_DATABASE_URL": url, "LAKEHOUSE_DATA_DIR": str(tmp_path)}

    def lakehouse(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, env=env, timeout=120)

    with psycopg.connect(url, autocommit=True) as conn:
        tenant = make_tenant(conn)
        slug = conn.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchone()
        assert slug
        old = finished_run(conn, tenant, days_ago=12)
        young = finished_run(conn, tenant, days_ago=8)
        shown = lakehouse("projects", "retention", slug[0])
        assert shown.returncode == 0 and f"{slug[0]}: events kept 30 days" in shown.stdout, shown.stderr
        assert lakehouse("projects", "retention", slug[0], "--days", "4000").returncode != 0
        changed = lakehouse("projects", "retention", str(tenant.project_id), "--days", "10")
        assert changed.returncode == 0 and "kept 10 days" in changed.stdout, changed.stderr
        actor = conn.execute(
            "select actor, detail from ops.audit_log where entity_id = %s and action = 'event_retention'",
            (tenant.project_id,),
        ).fetchall()
        assert len(actor) == 1 and actor[0][0].startswith("cli:") and actor[0][1] == {"old": 30, "new": 10}

        archived = lakehouse("projects", "archive-events")
        assert archived.returncode == 0, archived.stderr
        assert archived.stdout.startswith("1 run(s) archived: 14 events, 2 attempts to Parquet; 16 row(s) removed")
        counts = conn.execute(
            "select r.id, (select count(*) from ops.events e where e.run_id = r.id) from ops.runs r "
            "left join ops.event_archives a on a.run_id = r.id where r.id = any(%s) order by a.status nulls last",
            ([old, young],),
        ).fetchall()
        assert counts == [(old, 0), (young, 14)]
        assert list((tmp_path / "artifacts" / "retention").rglob("*.parquet"))
        assert "kept forever" in lakehouse("projects", "retention", slug[0], "--days", "0").stdout
