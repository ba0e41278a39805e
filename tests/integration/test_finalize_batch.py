"""The set-based batch finalize (ops.finalize_tasks) gives the same verdicts, statuses and messages as
finalizing item by item (ops.finalize_tasks_each): replays, stale leases, unknown tasks, bad outcomes,
retries, DAG release and skips, and a batch naming one task twice."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.factories import Tenant, claim, finalize, make_executor, make_tenant, submit, task, task_status


@pytest.fixture
def tenant(db: psycopg.Connection) -> Tenant:
    return make_tenant(db)


def world(db: psycopg.Connection, tenant: Tenant) -> tuple[uuid.UUID, dict[str, dict[str, Any]], uuid.UUID]:
    """A run (a, b, c, d -> after_a, e -> after_e, r retryable) with every task without deps claimed, and
    'd' already finalized succeeded; returns the run, the claimed rows by key, and a second run's claim."""
    pool = f"pool-{uuid.uuid4().hex[:10]}"
    tasks = [
        task("a", pool=pool),
        task("b", pool=pool),
        task("c", pool=pool),
        task("d", pool=pool),
        task("e", pool=pool),
        task("r", pool=pool, max_attempts=2, retry_backoff_s=0),
        task("after_a", pool=pool, depends_on=["a"]),
        task("after_e", pool=pool, depends_on=["e"]),
    ]
    run = submit(db, tenant, tasks)
    executor = make_executor(db, tenant, pool=pool)
    rows = {row["task_key"]: row for row in claim(db, executor, max_tasks=10)}
    assert set(rows) == {"a", "b", "c", "d", "e", "r"}
    finalize(db, rows["d"]["task_id"], rows["d"]["lease_token"], "succeeded")
    return run, rows, executor


def items_of(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def item(key: str, outcome: str, *, lease: Any = None, **extra: Any) -> dict[str, Any]:
        lease = rows[key]["lease_token"] if lease is None else lease
        return {"task_id": str(rows[key]["task_id"]), "lease_token": str(lease), "outcome": outcome, **extra}

    return [
        item("a", "succeeded", result={"rows": 1}),
        item("b", "bogus"),
        item("c", "succeeded", lease=uuid.uuid4()),
        item("d", "succeeded"),  # a replay
        item("e", "failed", error="boom", result={"retryable": False}),
        item("r", "failed", error="try again"),
        {"task_id": str(uuid.uuid4()), "lease_token": str(uuid.uuid4()), "outcome": "succeeded"},
    ]


def normalized(db: psycopg.Connection, function: str, items: list[dict[str, Any]], ids: dict[str, str]) -> list[Any]:
    with db.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select * from ops.{function}(%s::jsonb)", (json.dumps(items),))
        out = cur.fetchall()
    names = {v: k for k, v in ids.items()}
    rows = []
    for row in out:
        error = row["error"]
        for task_id, key in names.items():
            error = error.replace(task_id, key) if error else error
        if row["error_code"] == "LH404":
            error = "not found"  # names a task id of its own world
        key = names.get(str(row["task_id"]), "unknown")
        rows.append((key, row["task_status"], row["run_status"], row["replayed"], row["error_code"], error))
    return rows


@pytest.mark.parametrize("duplicate", [False, True])
def test_batch_finalize_matches_item_by_item(db: psycopg.Connection, tenant: Tenant, duplicate: bool) -> None:
    outcomes = []
    for function in ("finalize_tasks", "finalize_tasks_each"):
        run, rows, _ = world(db, tenant)
        items = items_of(rows)
        if duplicate:  # the same task twice: the second item sees the first (a replay, then a conflict)
            items += [items[0], {**items[0], "outcome": "failed"}]
        ids = {key: str(row["task_id"]) for key, row in rows.items()}
        results = normalized(db, function, items, ids)
        outcomes.append((results, task_status(db, run)))
    assert outcomes[0] == outcomes[1]
    results, statuses = outcomes[0]
    by_key = {r[0]: r for r in reversed(results)}  # each task's first item
    assert by_key["a"][1:5] == ("succeeded", "running", False, None)
    assert by_key["b"][4] == "LH422"
    assert by_key["c"][4] == "LH409" and "does not belong" in by_key["c"][5]
    assert by_key["d"][1:5] == ("succeeded", "running", True, None)
    assert by_key["r"][1] == "queued"
    assert by_key["unknown"][4] == "LH404"
    assert statuses["after_a"] == "queued" and statuses["after_e"] == "skipped" and statuses["e"] == "failed"
    if duplicate:
        assert [r[4] for r in results[-2:]] == [None, "LH409"]
        assert results[-2][3] is True
