"""The task lifecycle in SQL on a real Postgres: claim, lease fencing, requeue, DAG release, events."""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest

from tests.integration.factories import (
    Tenant,
    assert_lease_lost,
    claim,
    finalize,
    make_executor,
    make_tenant,
    run_status,
    submit,
    task,
    task_status,
)


@pytest.fixture
def tenant(db: psycopg.Connection) -> Tenant:
    return make_tenant(db)


@pytest.fixture
def pool() -> str:
    """A pool of this test's own, so tests sharing the database never claim each other's tasks."""
    return f"pool-{uuid.uuid4().hex[:10]}"


def test_concurrent_claimers_claim_each_task_exactly_once(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    tasks = [task(f"t{i}", pool=pool) for i in range(500)]
    for _ in range(4):  # 4 runs x 500 tasks = 2,000 queued tasks
        submit(db, tenant, tasks)
    executors = [make_executor(db, tenant, pool=pool, max_concurrency=10_000) for _ in range(8)]
    claimed: list[list[uuid.UUID]] = [[] for _ in executors]
    errors: list[BaseException] = []
    start = threading.Barrier(len(executors))

    def claimer(i: int) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                start.wait()
                while True:
                    got = claim(conn, executors[i], max_tasks=25)
                    if not got:
                        return
                    claimed[i].extend(row["task_id"] for row in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(executors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    every = [tid for ids in claimed for tid in ids]
    assert len(every) == 2000
    assert len(set(every)) == 2000
    assert sum(1 for ids in claimed if ids) >= 2, "the claim load was not spread over claimers"
    leased = db.execute(
        "select count(*), count(distinct lease_token) from ops.tasks where pool = %s and status = 'claimed'", (pool,)
    ).fetchone()
    assert leased == (2000, 2000)
    attempts = db.execute(
        "select count(*) from ops.task_attempts a join ops.tasks t on t.id = a.task_id where t.pool = %s", (pool,)
    ).fetchone()
    assert attempts == (2000,)


def test_stale_lease_cannot_extend_or_finalize(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(db, tenant, [task("only", pool=pool)])
    executor = make_executor(db, tenant, pool=pool)
    (first,) = claim(db, executor, lease_seconds=0)  # expires at once
    assert db.execute("select ops.requeue_expired()").fetchone()[0] >= 1  # type: ignore[index]
    db.execute("update ops.tasks set not_before = now() where run_id = %s", (run_id,))
    (second,) = claim(db, executor)
    assert second["attempt"] == 2 and second["lease_token"] != first["lease_token"]

    assert_lease_lost(db, first)
    # Nothing changed: the current holder still owns the task and can finish it.
    row = db.execute("select status, lease_token from ops.tasks where id = %s", (second["task_id"],)).fetchone()
    assert row == ("claimed", second["lease_token"])
    assert finalize(db, second["task_id"], second["lease_token"])["task_status"] == "succeeded"
    assert run_status(db, run_id) == "succeeded"


def test_finalize_is_idempotent_for_same_lease_and_outcome(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(db, tenant, [task("only", pool=pool)])
    (got,) = claim(db, make_executor(db, tenant, pool=pool))
    first = finalize(db, got["task_id"], got["lease_token"], "succeeded", result={"rows": 3})
    again = finalize(db, got["task_id"], got["lease_token"], "succeeded", result={"rows": 3})
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["task_status"] == "succeeded" and again["run_status"] == "succeeded"
    with pytest.raises(psycopg.Error) as err:
        finalize(db, got["task_id"], got["lease_token"], "failed")
    assert err.value.sqlstate == "LH409"
    outcomes = db.execute(
        "select count(*) from ops.task_attempts where task_id = %s and outcome is not null", (got["task_id"],)
    ).fetchone()
    assert outcomes == (1,)
    assert run_status(db, run_id) == "succeeded"


def test_expired_lease_is_requeued_then_lost_after_max_attempts(
    db: psycopg.Connection, tenant: Tenant, pool: str
) -> None:
    run_id = submit(
        db,
        tenant,
        [task("flaky", pool=pool, max_attempts=2, retry_backoff_s=0), task("after", pool=pool, depends_on=["flaky"])],
    )
    executor = make_executor(db, tenant, pool=pool)
    (a1,) = claim(db, executor, lease_seconds=0)
    db.execute("select ops.requeue_expired()")
    assert task_status(db, run_id)["flaky"] == "queued"
    (a2,) = claim(db, executor, lease_seconds=0)
    assert a2["attempt"] == 2
    db.execute("select ops.requeue_expired()")
    assert task_status(db, run_id) == {"flaky": "lost", "after": "skipped"}
    outcomes = db.execute(
        "select attempt, outcome from ops.task_attempts where task_id = %s order by attempt", (a1["task_id"],)
    ).fetchall()
    assert outcomes == [(1, "lost"), (2, "lost")]
    assert run_status(db, run_id) == "failed"
    assert claim(db, executor) == []


def test_task_waits_for_its_dependencies(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(
        db,
        tenant,
        [
            task("extract", pool=pool),
            task("transform", pool=pool, depends_on=["extract"]),
            task("side", pool=pool, depends_on=["extract"]),
            task("load", pool=pool, depends_on=["transform", "side"]),
        ],
    )
    executor = make_executor(db, tenant, pool=pool)
    assert run_status(db, run_id) == "queued"
    got = claim(db, executor, max_tasks=10)
    assert [g["task_key"] for g in got] == ["extract"]
    assert run_status(db, run_id) == "running"
    finalize(db, got[0]["task_id"], got[0]["lease_token"])
    got = claim(db, executor, max_tasks=10)
    assert sorted(g["task_key"] for g in got) == ["side", "transform"]
    finalize(db, got[0]["task_id"], got[0]["lease_token"])
    assert claim(db, executor, max_tasks=10) == [], "load must wait for both of its dependencies"
    finalize(db, got[1]["task_id"], got[1]["lease_token"])
    (load,) = claim(db, executor, max_tasks=10)
    assert load["task_key"] == "load"
    assert finalize(db, load["task_id"], load["lease_token"])["run_status"] == "succeeded"


def test_failure_retries_then_skips_dependants(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(
        db,
        tenant,
        [
            task("a", pool=pool, max_attempts=2, retry_backoff_s=0),
            task("b", pool=pool, depends_on=["a"]),
            task("c", pool=pool, depends_on=["b"]),
        ],
    )
    executor = make_executor(db, tenant, pool=pool)
    (first,) = claim(db, executor)
    assert finalize(db, first["task_id"], first["lease_token"], "failed", error="boom")["task_status"] == "queued"
    (second,) = claim(db, executor)
    assert second["attempt"] == 2
    assert finalize(db, second["task_id"], second["lease_token"], "failed", error="boom")["task_status"] == "failed"
    assert task_status(db, run_id) == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert run_status(db, run_id) == "failed"


def test_events_resent_with_same_seq_are_stored_once(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(db, tenant, [task("only", pool=pool)])
    (got,) = claim(db, make_executor(db, tenant, pool=pool))
    batch = [{"seq": i, "type": "log", "level": "info", "message": f"line {i}"} for i in range(5)]
    first = db.execute(
        "select ops.append_events(%s, %s, %s::jsonb)", (got["task_id"], got["lease_token"], json.dumps(batch))
    ).fetchone()
    overlap = [*batch[3:], {"seq": 5, "message": "line 5"}]
    second = db.execute(
        "select ops.append_events(%s, %s, %s::jsonb)", (got["task_id"], got["lease_token"], json.dumps(overlap))
    ).fetchone()
    assert (first, second) == ((5,), (1,))
    rows = db.execute(
        "select seq, message from ops.events where task_id = %s order by seq", (got["task_id"],)
    ).fetchall()
    assert rows == [(i, f"line {i}") for i in range(6)]
    assert task_status(db, run_id)["only"] == "running"
    with pytest.raises(psycopg.Error) as err:
        db.execute("select ops.append_events(%s, %s, '[]'::jsonb)", (got["task_id"], uuid.uuid4()))
    assert err.value.sqlstate == "LH409"


def test_events_and_artifacts_are_append_only(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(db, tenant, [task("only", pool=pool)])
    (got,) = claim(db, make_executor(db, tenant, pool=pool))
    db.execute(
        "select ops.append_events(%s, %s, %s::jsonb)",
        (got["task_id"], got["lease_token"], json.dumps([{"seq": 0, "message": "hello"}])),
    )
    db.execute(
        "insert into ops.artifacts (run_id, project_id, task_id, attempt, name, uri, size_bytes, sha256) "
        "values (%s, %s, %s, 1, 'out.txt', 'file:///x', 5, %s)",
        (run_id, tenant.project_id, got["task_id"], "a" * 64),
    )
    for statement in (
        "update ops.events set message = 'edited' where task_id = %s",
        "delete from ops.events where task_id = %s",
        "update ops.artifacts set size_bytes = 6 where task_id = %s",
        "delete from ops.artifacts where task_id = %s",
    ):
        with pytest.raises(psycopg.Error) as err:
            db.execute(statement, (got["task_id"],))
        assert err.value.sqlstate == "LH423", statement
        assert "append-only" in str(err.value)
    assert db.execute("select message from ops.events where task_id = %s", (got["task_id"],)).fetchone() == ("hello",)


def test_run_spec_is_immutable(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    run_id = submit(db, tenant, [task("only", pool=pool)])
    with pytest.raises(psycopg.Error) as err:
        db.execute("update ops.runs set spec = '{}'::jsonb where id = %s", (run_id,))
    assert err.value.sqlstate == "LH423"
    with pytest.raises(psycopg.Error):
        db.execute("update ops.tasks set spec = '{}'::jsonb where run_id = %s", (run_id,))


def test_cancel_run_stops_waiting_tasks_and_signals_running_ones(
    db: psycopg.Connection, tenant: Tenant, pool: str
) -> None:
    run_id = submit(
        db,
        tenant,
        [
            task("long", pool=pool),
            task("next", pool=pool, depends_on=["long"]),
            task("other", pool=pool, engine="python"),
        ],
    )
    executor = make_executor(db, tenant, pool=pool, engines=("shell",))
    (got,) = claim(db, executor)
    assert db.execute("select ops.cancel_run(%s, 'tester')", (run_id,)).fetchone() == ("running",)
    assert task_status(db, run_id) == {"long": "claimed", "next": "cancelled", "other": "cancelled"}
    hb = db.execute("select * from ops.extend_lease(%s, %s)", (got["task_id"], got["lease_token"])).fetchone()
    assert hb is not None and hb[1] is True, "the heartbeat must carry the cancel request"
    assert finalize(db, got["task_id"], got["lease_token"], "cancelled")["run_status"] == "cancelled"
    audit = db.execute(
        "select old_status, new_status from ops.audit_log where entity = 'runs' and entity_id = %s order by id",
        (run_id,),
    ).fetchall()
    assert audit == [(None, "queued"), ("queued", "running"), ("running", "cancelled")]


def test_idempotency_key_returns_the_same_run(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    first = submit(db, tenant, [task("only", pool=pool)], idempotency_key="nightly-2026-11-26")
    again = submit(db, tenant, [task("only", pool=pool)], idempotency_key="nightly-2026-11-26")
    assert first == again
    count = db.execute("select count(*) from ops.runs where project_id = %s", (tenant.project_id,)).fetchone()
    assert count == (1,)


@pytest.mark.parametrize(
    ("tasks", "field", "fragment"),
    [
        ([], "spec.tasks", "non-empty"),
        ([{"engine": "shell"}], "spec.tasks[0].key", "required"),
        ([{"key": "a", "engine": "shell"}, {"key": "a", "engine": "shell"}], "spec.tasks[1].key", "duplicate"),
        ([{"key": "a"}], "spec.tasks[0].engine", "required"),
        ([{"key": "a", "engine": "shell", "depends_on": ["zz"]}], "spec.tasks[0].depends_on", "unknown task key"),
        (
            [
                {"key": "a", "engine": "shell", "depends_on": ["b"]},
                {"key": "b", "engine": "shell", "depends_on": ["a"]},
            ],
            "spec.tasks",
            "cycle",
        ),
        # Field rules (ranges, patterns) live in Python (control_room/specs); SQL keeps what the insert casts.
        ([{"key": "a", "engine": "shell", "timeout_s": "soon"}], "spec.tasks[0].timeout_s", "whole number"),
        ([{"key": "a", "engine": "shell", "max_attempts": 1.5}], "spec.tasks[0].max_attempts", "whole number"),
    ],
)
def test_invalid_spec_is_refused_naming_the_field(
    db: psycopg.Connection, tenant: Tenant, tasks: list[dict[str, object]], field: str, fragment: str
) -> None:
    with pytest.raises(psycopg.Error) as err:
        db.execute(
            "select * from ops.submit_run(%s, 'dev', %s::jsonb)", (tenant.project_id, json.dumps({"tasks": tasks}))
        )
    assert err.value.sqlstate == "LH422"
    assert err.value.diag.column_name == field
    assert fragment in str(err.value)
    assert db.execute("select count(*) from ops.runs where project_id = %s", (tenant.project_id,)).fetchone() == (0,)


def test_routing_rule_picks_pool_and_labels(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    db.execute(
        "insert into ops.routing_rules "
        "(org_id, name, position, match_environment, match_engine, pool, required_labels) "
        "values (%s, 'prod-python', 1, 'prod', 'python', %s, '{gpu}')",
        (tenant.org_id, pool),
    )
    run_id = submit(db, tenant, [task("p", engine="python"), task("s", engine="shell")], environment="prod")
    rows = {
        key: (p, labels)
        for key, p, labels in db.execute(
            "select key, pool, required_labels from ops.tasks where run_id = %s", (run_id,)
        ).fetchall()
    }
    assert rows["p"] == (pool, ["gpu"])
    assert rows["s"] == ("default", [])
    plain = make_executor(db, tenant, pool=pool, engines=("python",))
    assert claim(db, plain) == [], "an executor without the required label must not get the task"
    gpu = make_executor(db, tenant, pool=pool, engines=("python",), labels=("gpu", "big"))
    assert [g["task_key"] for g in claim(db, gpu)] == ["p"]


def test_concurrency_cap_limits_claims(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    db.execute(
        "insert into ops.caps (org_id, name, scope, project_id, kind, limit_value) "
        "values (%s, 'two-at-a-time', 'project', %s, 'concurrent_tasks', 2)",
        (tenant.org_id, tenant.project_id),
    )
    submit(db, tenant, [task(f"t{i}", pool=pool) for i in range(5)])
    executor = make_executor(db, tenant, pool=pool)
    first = claim(db, executor, max_tasks=5)
    assert len(first) == 2
    assert claim(db, executor, max_tasks=5) == []
    finalize(db, first[0]["task_id"], first[0]["lease_token"])
    assert len(claim(db, executor, max_tasks=5)) == 1
    peak = db.execute(
        "select u.peak_concurrency from ops.cap_usage u join ops.caps c on c.id = u.cap_id where c.org_id = %s",
        (tenant.org_id,),
    ).fetchone()
    assert peak == (2,)


def test_runtime_cap_shortens_timeout_and_executor_capacity_is_honoured(
    db: psycopg.Connection, tenant: Tenant, pool: str
) -> None:
    db.execute(
        "insert into ops.caps (org_id, name, scope, environment_id, kind, limit_value) "
        "values (%s, 'dev-runtime', 'environment', %s, 'max_runtime_s', 30)",
        (tenant.org_id, tenant.environments["dev"]),
    )
    submit(db, tenant, [task(f"t{i}", pool=pool, timeout_s=600) for i in range(3)])
    executor = make_executor(db, tenant, pool=pool, max_concurrency=2)
    got = claim(db, executor, max_tasks=10)
    assert len(got) == 2
    assert {g["timeout_s"] for g in got} == {30}
    assert got[0]["limits"] == {"max_runtime_s": 30}


def test_runs_per_day_cap_refuses_with_a_message(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    db.execute(
        "insert into ops.caps (org_id, name, scope, project_id, kind, limit_value) "
        "values (%s, 'one-per-day', 'project', %s, 'runs_per_day', 1)",
        (tenant.org_id, tenant.project_id),
    )
    submit(db, tenant, [task("a", pool=pool)])
    row = db.execute(
        "select * from ops.submit_run(%s, 'dev', %s::jsonb)",
        (tenant.project_id, json.dumps({"tasks": [task("a", pool=pool)]})),
    ).fetchone()
    assert row is not None and row[0] is None and row[1] is False
    assert 'cap "one-per-day"' in row[2] and "runs_per_day = 1" in row[2]
    usage = db.execute(
        "select runs, breaches from ops.cap_usage u join ops.caps c on c.id = u.cap_id where c.org_id = %s",
        (tenant.org_id,),
    ).fetchone()
    assert usage == (1, 1)


def test_queued_task_sends_notify(database_url: str, db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("listen lakehouse_tasks_queued")
        submit(db, tenant, [task("a", pool=pool)])
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [pool]


def test_every_task_transition_is_on_record(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    submit(db, tenant, [task("a", pool=pool, max_attempts=2, retry_backoff_s=0)])
    executor = make_executor(db, tenant, pool=pool)
    (first,) = claim(db, executor)
    db.execute("select * from ops.extend_lease(%s, %s)", (first["task_id"], first["lease_token"]))
    finalize(db, first["task_id"], first["lease_token"], "failed")  # retried: back to the queue
    (second,) = claim(db, executor)
    finalize(db, second["task_id"], second["lease_token"])  # finalized straight from claimed
    transitions = db.execute(
        "select old_status, new_status from ops.task_transitions(%s)",
        (first["task_id"],),
    ).fetchall()
    assert transitions == [
        ("queued", "claimed"),
        ("claimed", "running"),
        ("running", "queued"),
        ("queued", "claimed"),
        ("claimed", "succeeded"),
    ]
    # The moves in and out of a lease are the attempts' own rows; the audit log holds only the others.
    logged = db.execute(
        "select old_status, new_status from ops.audit_log where entity = 'tasks' and entity_id = %s order by id",
        (first["task_id"],),
    ).fetchall()
    assert logged == [("claimed", "running")]
