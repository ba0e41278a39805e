"""`lakehouse serving`: create an endpoint, canary, roll back, scale, stop, delete and tokens on a real database (the
replicas' service tasks are queued; no agent runs them here), and the serving replica cap."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from control_room.db.migrate import migrate
from tests.integration.factories import make_tenant


def test_the_serving_commands(fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_database()
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        tenant = make_tenant(conn)
        slug = conn.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchone()
    assert slug
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    project = ["--project", slug[0]]
    try:
        created = runner.invoke(
            app, ["serving", "create", "churn", "churn-classifier", "1", *project, "--replicas", "2"]
        )
        assert created.exit_code == 0, created.output
        assert "starting" in created.output and "0/2 replicas" in created.output
        assert "churn-classifier v1 100%" in created.output
        again = runner.invoke(app, ["serving", "create", "churn", "churn-classifier", "1", *project])
        assert again.exit_code == 1 and "already exists" in again.output
        canary = runner.invoke(app, ["serving", "canary", "churn", "2", *project, "--percent", "10"])
        assert canary.exit_code == 0 and "v1 90%, churn-classifier v2 10%" in canary.output, canary.output
        assert "0/4 replicas" in canary.output
        rolled = runner.invoke(app, ["serving", "rollback", "churn", *project])
        assert rolled.exit_code == 0 and "rev 3" in rolled.output and "v1 100%" in rolled.output, rolled.output
        assert "0/2 replicas" in rolled.output
        token = runner.invoke(app, ["serving", "token", "create", "churn", "ci", *project])
        assert token.exit_code == 0 and token.output.startswith("lhe_")
        with psycopg.connect(url, autocommit=True) as conn:
            # The org's serving replicas are capped: 3 allowed, 2 run, so scaling to 4 is refused.
            conn.execute(
                "insert into ops.caps (org_id, name, scope, engine, kind, limit_value) "
                "values (%s, 'serving-replicas', 'engine', 'serving', 'concurrent_tasks', 3)",
                (tenant.org_id,),
            )
        refused = runner.invoke(app, ["serving", "scale", "churn", "4", *project])
        assert refused.exit_code == 1 and 'cap "serving-replicas" allows 3 serving replicas' in refused.output
        shown = runner.invoke(app, ["serving", "get", "churn", *project])
        assert shown.exit_code == 0 and shown.output.count("queued") == 2, shown.output
        assert "rollback" in shown.output and "canary" in shown.output and "create" in shown.output
        stopped = runner.invoke(app, ["serving", "stop", "churn", *project])
        assert stopped.exit_code == 0 and "stopped" in stopped.output
        with psycopg.connect(url, autocommit=True) as conn:
            statuses = conn.execute(
                "select t.status, count(*) from ops.tasks t where t.engine = 'serving' group by 1"
            ).fetchall()
        assert dict(statuses) == {"cancelled": 4}  # two of v1 (kept through the rollback), two of v2
        listed = runner.invoke(app, ["serving", "list", *project])
        assert listed.exit_code == 0 and "churn" in listed.output and "stopped" in listed.output

        # Delete: asks first (declining keeps the endpoint); --yes deletes it and stops its replicas.
        live = runner.invoke(app, ["serving", "create", "fraud", "churn-classifier", "1", *project])
        assert live.exit_code == 0, live.output
        declined = runner.invoke(app, ["serving", "delete", "fraud", *project], input="n\n")
        assert declined.exit_code == 1 and "Delete serving endpoint fraud" in declined.output, declined.output
        assert runner.invoke(app, ["serving", "get", "fraud", *project]).exit_code == 0
        deleted = runner.invoke(app, ["serving", "delete", "fraud", *project, "--yes"])
        assert deleted.exit_code == 0 and "deleted fraud" in deleted.output, deleted.output
        gone = runner.invoke(app, ["serving", "get", "fraud", *project])
        assert gone.exit_code == 1 and "endpoint fraud does not exist" in gone.output, gone.output
        missing = runner.invoke(app, ["serving", "delete", "fraud", *project, "--yes"])
        assert missing.exit_code == 1 and "endpoint fraud does not exist" in missing.output, missing.output
        with psycopg.connect(url, autocommit=True) as conn:
            fraud_tasks = conn.execute(
                "select t.status from ops.tasks t join ops.runs r on r.id = t.run_id "
                "where t.engine = 'serving' and r.id not in (select run_id from ops.serving_replicas)"
            ).fetchall()
            audit = conn.execute(
                "select actor, detail ->> 'name' from ops.audit_log "
                "where entity = 'serving_endpoints' and action = 'delete'"
            ).fetchall()
        assert [status for (status,) in fraud_tasks] == ["cancelled"]
        assert len(audit) == 1 and audit[0][0].startswith("cli:") and audit[0][1] == "fraud"
        still = runner.invoke(app, ["serving", "list", *project])
        assert "churn" in still.output and "fraud" not in still.output
    finally:
        get_settings.cache_clear()
