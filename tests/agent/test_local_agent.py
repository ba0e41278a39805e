"""`lakehouse run`'s local agent: a rotated token in its environment only, and the demo pipeline run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from control_room.db.migrate import migrate
from control_room.services.auth import hash_token
from control_room.services.demo import DEMO_PIPELINE_KEY, load_demo_data
from control_room.supervisor import LOCAL_AGENT_NAME_FILE, local_agent_env, rotate_local_agent_token
from tests.integration.factories import make_tenant


def test_the_agent_environment_has_its_token_and_none_of_the_control_rooms_settings(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "LAKEHOUSE_DATABASE_URL": "postgresql://admin:secret@db/lakehouse",
        "LAKEHOUSE_SESSION_SECRET": "s3cret",
        "LAKEHOUSE_EXECUTOR_CONCURRENCY": "8",
        "LAKEHOUSE_EXECUTOR_TOKEN": "lhx_stale",
    }
    env = local_agent_env("http://127.0.0.1:3000", "lhx_fresh", tmp_path, base=base)
    assert env["LAKEHOUSE_EXECUTOR_TOKEN"] == "lhx_fresh" and env["LAKEHOUSE_EXECUTOR_URL"] == "http://127.0.0.1:3000"
    assert "LAKEHOUSE_DATABASE_URL" not in env and "LAKEHOUSE_SESSION_SECRET" not in env
    assert env["LAKEHOUSE_EXECUTOR_CONCURRENCY"] == "8", "an operator's agent settings are kept"
    assert env["LAKEHOUSE_EXECUTOR_SPOOL_DIR"] == str(tmp_path / "executor" / "spool")
    assert float(env["LAKEHOUSE_EXECUTOR_GRACE_PERIOD_S"]) < 10, "Ctrl-C must not wait long for the agent"


def test_each_start_rotates_the_token_and_keeps_one_identity(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        make_tenant(conn)  # the local agent belongs to an org (the demo org, else the oldest)
    first_name, first_token = rotate_local_agent_token(database_url, tmp_path)
    second_name, second_token = rotate_local_agent_token(database_url, tmp_path)
    assert first_name == second_name and first_token != second_token
    assert (tmp_path / LOCAL_AGENT_NAME_FILE).read_text().strip() == second_name
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select pool, token_revoked_at is not null, token_hash, org_id is not null from ops.executors "
            "where name = %s",
            (first_name,),
        ).fetchall()
    assert rows == [("default", False, hash_token(second_token), True)], "one executor row, with the new token"
    assert hash_token(first_token) != rows[0][2], "the previous token no longer authenticates"


def test_demo_data_queues_the_shell_python_shell_pipeline_once(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrate(url)
    assert load_demo_data(url) is True
    assert load_demo_data(url) is False
    with psycopg.connect(url) as conn:
        runs = conn.execute(
            "select id, trigger, status from ops.runs where idempotency_key = %s", (DEMO_PIPELINE_KEY,)
        ).fetchall()
        assert len(runs) == 1 and runs[0][1:] == ("demo", "queued")
        tasks = conn.execute(
            "select key, engine, depends_on, status, pool from ops.tasks where run_id = %s order by key", (runs[0][0],)
        ).fetchall()
    assert [(t[0], t[1], t[2]) for t in tasks] == [
        ("extract", "shell", []),
        ("publish", "shell", ["summarize"]),
        ("summarize", "python", ["extract"]),
    ]
    by_key = {t[0]: t for t in tasks}
    assert by_key["extract"][3] == "queued" and by_key["summarize"][3] == "pending"
    assert by_key["extract"][4] == "default", "routed to the local agent's pool"


def test_the_supervisor_names_the_demo_org_as_the_demo_loader_does() -> None:
    from control_room.services.demo import DEMO_ORG_SLUG
    from control_room.supervisor import DEMO_ORG_SLUG_FOR_AGENT

    assert DEMO_ORG_SLUG_FOR_AGENT == DEMO_ORG_SLUG
