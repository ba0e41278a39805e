"""Claims in SQL: idempotent by claim id, an executor's forgotten leases handed back by its heartbeat, a
heartbeat after finalize reported as finalized (not lost), only the executor's org's tasks, and a claim whose
commit a crash lost (the claim does not wait for its WAL flush) a lost lease."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from control_room.services import tasks
from tests.integration.factories import (
    Tenant,
    assert_lease_lost,
    claim,
    finalize,
    make_executor,
    make_tenant,
    submit,
    task,
)

pytestmark = pytest.mark.migrations


@pytest.fixture
def tenant(db: psycopg.Connection) -> Tenant:
    return make_tenant(db)


@pytest.fixture
def pool() -> str:
    return f"pool-{uuid.uuid4().hex[:10]}"


def test_a_retried_claim_returns_the_same_leases(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    submit(db, tenant, [task(f"t{i}", pool=pool) for i in range(3)])
    executor = make_executor(db, tenant, pool=pool)
    claim_id = uuid.uuid4()
    first = claim(db, executor, max_tasks=2, claim_id=claim_id)
    again = claim(db, executor, max_tasks=2, claim_id=claim_id)
    assert len(first) == 2
    assert {(t["task_id"], t["lease_token"], t["attempt"]) for t in again} == {
        (t["task_id"], t["lease_token"], t["attempt"]) for t in first
    }
    other = claim(db, executor, max_tasks=2, claim_id=uuid.uuid4())
    assert len(other) == 1 and other[0]["task_id"] not in {t["task_id"] for t in first}
    finalize(db, first[0]["task_id"], first[0]["lease_token"])
    assert [t["task_id"] for t in claim(db, executor, max_tasks=2, claim_id=claim_id)] == [first[1]["task_id"]]


def test_heartbeat_hands_back_tasks_the_executor_does_not_know(
    db: psycopg.Connection, tenant: Tenant, pool: str
) -> None:
    run = submit(db, tenant, [task("known", pool=pool), task("forgotten", pool=pool)])
    executor = make_executor(db, tenant, pool=pool)
    got = {t["task_key"]: t for t in claim(db, executor, max_tasks=2)}
    row = db.execute(
        "select released_task_ids from ops.executor_heartbeat(%s, %s, 0)", (executor, [got["known"]["task_id"]])
    ).fetchone()
    assert row == ([got["forgotten"]["task_id"]],)
    status = dict(db.execute("select key, status from ops.tasks where run_id = %s", (run,)).fetchall())
    assert status == {"known": "claimed", "forgotten": "queued"}
    attempts = db.execute(
        "select t.max_attempts, a.outcome from ops.tasks t join ops.task_attempts a on a.task_id = t.id "
        "where t.id = %s",
        (got["forgotten"]["task_id"],),
    ).fetchall()
    assert attempts == [(4, "released")], "handed back without counting against max_attempts"
    recent = db.execute("select released_task_ids from ops.executor_heartbeat(%s, '{}', 30)", (executor,)).fetchone()
    assert recent == ([],), "a lease claimed moments ago may still be in flight to the agent: kept"


def test_heartbeat_after_finalize_says_finalized(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    submit(db, tenant, [task("a", pool=pool)])
    (got,) = claim(db, make_executor(db, tenant, pool=pool))
    finalize(db, got["task_id"], got["lease_token"])
    (item,) = db.execute(
        "select ok, error from ops.extend_leases(%s::jsonb)",
        (f'[{{"task_id": "{got["task_id"]}", "lease_token": "{got["lease_token"]}"}}]',),
    ).fetchall()
    assert item[0] is False and item[1].startswith("finalized:") and "lease lost" not in item[1]


def test_claims_return_only_the_executor_orgs_tasks(db: psycopg.Connection, tenant: Tenant, pool: str) -> None:
    other = make_tenant(db)
    submit(db, tenant, [task("mine", pool=pool)])
    outsider = make_executor(db, other, pool=pool)
    assert claim(db, outsider, max_tasks=5) == []
    db.execute("select ops.set_pool_shared(%s, %s, true)", (other.org_id, pool))
    (shared,) = claim(db, outsider, max_tasks=5)
    assert shared["task_key"] == "mine", "a shared pool serves other orgs whose routing sends tasks to it"
    audit = db.execute(
        "select action, new_status from ops.audit_log where entity = 'pools' and detail ->> 'org_id' = %s",
        (str(other.org_id),),
    ).fetchall()
    assert audit == [("share", "shared")]


def test_a_claim_skips_only_its_own_flush_and_a_claim_a_crash_forgot_is_a_lost_lease(
    db: psycopg.Connection, tenant: Tenant, pool: str
) -> None:
    run_id = submit(db, tenant, [task("only", pool=pool)])
    executor = make_executor(db, tenant, pool=pool)
    args = (executor, None, None, 1, 60, None)
    # What a crash before the WAL writer's flush leaves of a claim the agent was told of: nothing.
    with db.transaction(force_rollback=True), db.cursor(row_factory=dict_row) as cur:
        (forgotten,) = cur.execute(tasks.CLAIM_SQL, args).fetchall()
        assert cur.execute("select current_setting('synchronous_commit') as s").fetchone() == {"s": "off"}
    with db.cursor(row_factory=dict_row) as cur:
        (again,) = cur.execute(tasks.CLAIM_SQL, args).fetchall()  # committed, on its own (autocommit)
    # Only the claim's own transaction: the next one on the same pooled connection waits for its flush again.
    assert db.execute("select current_setting('synchronous_commit')").fetchone() == ("on",)
    assert (again["task_id"], again["attempt"]) == (forgotten["task_id"], 1)
    # The agent holding the forgotten lease hears "lease lost" at its first contact, as after a reaped lease.
    assert_lease_lost(db, forgotten, "failed")
    assert finalize(db, again["task_id"], again["lease_token"])["task_status"] == "succeeded"
    attempts = db.execute(
        "select a.attempt, a.outcome from ops.task_attempts a join ops.tasks t on t.id = a.task_id where t.run_id = %s",
        (run_id,),
    ).fetchall()
    assert attempts == [(1, "succeeded")]
