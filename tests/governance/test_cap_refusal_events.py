"""Each cap's past refusals on real Postgres: a refused submit (its transaction rolled back) is still listed
with its cap, who and where; a task a full claim cap holds is recorded once however often it is polled, with
when the hold started and ended; a memory or cores stop names the cap it broke; pages of one cap's refusals;
another org sees none of them."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from control_room.services import caps, runs
from control_room.services.errors import CapExceeded
from tests.bundle.conftest import CliResult
from tests.governance.conftest import GovWorld, add_executor
from tests.governance.test_caps_config import POOL_CAP, _caps, _claim, _tenant
from tests.integration.factories import submit, task

pytestmark = pytest.mark.migrations

NO_RUNS = caps.CapDraft(name="lh-no-runs", scope="project", project="lakehouse", kind="runs_per_day", limit=0)
SPEC = {"name": "nightly-load", "tasks": [{"key": "a", "engine": "shell", "command": "true"}]}


def _submit_as_operator(gov: GovWorld, name: str = "nightly-load") -> None:
    spec = {**SPEC, "name": name}
    gov.call("operator", lambda c: runs.submit_run(
        c, project="lakehouse", environment="prod", spec=spec, params={}, idempotency_key=None, priority=0,
        tags=[], trigger="api", requested_by=gov.users["operator"], requested_by_name="operator@example.com",
    ))  # fmt: skip


def test_a_refused_submit_is_listed_with_its_cap_after_its_transaction_rolled_back(
    gov: GovWorld, db: psycopg.Connection, lakehouse: object
) -> None:
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=NO_RUNS, by=None))
    with pytest.raises(CapExceeded, match='cap "lh-no-runs"'):
        _submit_as_operator(gov)
    assert db.execute(
        "select count(*) from ops.runs where org_id = %s and name = 'nightly-load'", (gov.org.org_id,)
    ).fetchone() == (0,), "the refused submit left no run"

    (refused,) = _caps(gov)["lh-no-runs"].recent
    assert (refused.layer, refused.run_id, refused.run_name, refused.task_key, refused.repeats) == (
        "submit", "", "nightly-load", "", 1
    )  # fmt: skip
    # An end user is recorded as themself, whatever name the caller passed.
    assert refused.principal == f"operator-{gov.org.slug}@test.example"
    assert (refused.project, refused.environment) == ("lakehouse", "prod")
    assert refused.message.startswith('cap "lh-no-runs" (runs_per_day = 0, project scope) is reached: 0 runs today')
    # The other caps of the org did not refuse it.
    assert _caps(gov)["org-runs-per-day"].recent == ()

    # The same submit refused again within minutes counts on the same row; another run is a row of its own.
    with pytest.raises(CapExceeded):
        _submit_as_operator(gov)
    with pytest.raises(CapExceeded):
        _submit_as_operator(gov, name="other-load")
    listed = _caps(gov)["lh-no-runs"].recent
    assert [(r.run_name, r.repeats) for r in listed] == [("other-load", 1), ("nightly-load", 2)]
    assert db.execute(
        "select count(*) from ops.cap_refusal_events where cap_id = (select id from ops.caps where org_id = %s "
        "and name = 'lh-no-runs')",
        (gov.org.org_id,),
    ).fetchone() == (2,)
    # Every refusal counts among the cap's refusals of the day (the caps page, the cap_breach alert), though
    # the transaction that made it rolled back.
    assert _caps(gov)["lh-no-runs"].refusals_today == 3

    # Pages of one cap's refusals, newest first.
    cap_id = gov.call("viewer", lambda c: caps.cap_id_by_name(c, org_id=gov.org.org_id, name="lh-no-runs"))
    first, cursor = gov.call("viewer", lambda c: caps.refusal_page(c, org_id=gov.org.org_id, cap_id=cap_id, limit=1))
    assert [r.run_name for r in first] == ["other-load"] and cursor
    second, after = gov.call(
        "viewer", lambda c: caps.refusal_page(c, org_id=gov.org.org_id, cap_id=cap_id, limit=1, cursor=cursor)
    )
    assert [r.run_name for r in second] == ["nightly-load"] and after is None

    # Another org's admin sees none of it, neither through the list nor through the table.
    assert gov.call("stranger", lambda c: caps.refusals(c, org_id=gov.org.org_id)) == {}

    async def rows_of_org(c: psycopg.AsyncConnection) -> list[tuple[object, ...]]:
        cur = await c.execute("select id from ops.cap_refusal_events where org_id = %s", (gov.org.org_id,))
        return await cur.fetchall()

    assert gov.call("stranger", rows_of_org) == []
    assert len(gov.call("viewer", rows_of_org)) == 2

    # The CLI lists it too (the refused run named, who asked).
    shown: CliResult = lakehouse("caps", "refusals", "lh-no-runs", "--json", "--org", gov.org.slug)  # type: ignore[operator]
    assert shown.exit_code == 0, shown.stderr
    items = json.loads(shown.stdout)["items"]
    assert [(r["layer"], r["run"], r["by"], r["where"]) for r in items] == [
        ("submit", "(refused: other-load)", f"operator-{gov.org.slug}@test.example", "lakehouse/prod"),
        ("submit", "(refused: nightly-load)", f"operator-{gov.org.slug}@test.example", "lakehouse/prod"),
    ]
    assert items[1]["message"].endswith("(x2)")


def test_a_refusal_is_recorded_again_only_when_true(gov: GovWorld, db: psycopg.Connection) -> None:
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=NO_RUNS, by=None))
    with pytest.raises(CapExceeded) as refused:
        _submit_as_operator(gov)
    row = refused.value.record
    assert row is not None
    # Re-sent: still one row, counted once.
    assert gov.call("operator", lambda c: caps.record_submit_refusal(c, row=row))
    assert db.execute(
        "select count(*), sum(repeats) from ops.cap_refusal_events where id = %s", (row["id"],)
    ).fetchone() == (1, 1)
    assert db.execute(
        "select breaches from ops.cap_usage where cap_id = %s and day = ops.utc_today()", (row["cap_id"],)
    ).fetchone() == (1,), "and one breach of the cap's day"
    # A viewer may not submit, so may not record; a cap that is not full records nothing.
    forged = {**row, "id": str(uuid.uuid4())}
    with pytest.raises(Exception, match="operator role"):
        gov.call("viewer", lambda c: caps.record_submit_refusal(c, row=forged))
    gov.call("org_admin", lambda c: caps.save_cap(
        c, org_id=gov.org.org_id, by=None,
        draft=caps.CapDraft(**{**NO_RUNS.__dict__, "limit": 100, "id": row["cap_id"]}),
    ))  # fmt: skip
    assert gov.call("operator", lambda c: caps.record_submit_refusal(c, row=forged)) is False
    assert db.execute("select count(*) from ops.cap_refusal_events where id = %s", (forged["id"],)).fetchone() == (0,)


def test_a_claim_hold_is_recorded_once_however_often_it_is_polled(gov: GovWorld, db: psycopg.Connection) -> None:
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=POOL_CAP, by=None))
    executor = add_executor(db, gov.org, pool="default", engines=["shell"], max_concurrency=3)
    run = submit(db, _tenant(gov, db), [task("first"), task("second")], name="two-tasks")
    ((first_id, lease),) = _claim(db, executor)
    for _ in range(20):
        assert _claim(db, executor) == [], "the pool cap of one task holds the second"
    holds = db.execute(
        "select task_id, attempt, at from ops.cap_refusal_events where run_id = %s and layer = 'claim'", (run,)
    ).fetchall()
    assert len(holds) == 1, "one hold, not one per poll"
    # Both tasks were queued in one transaction, so either may be claimed first: the hold is the other one's.
    claimed_key = db.execute("select key from ops.tasks where id = %s", (first_id,)).fetchone()[0]
    held_key = ({"first", "second"} - {claimed_key}).pop()
    (held,) = _caps(gov)["default-pool-concurrency"].recent
    assert (held.layer, held.run_id, held.task_key, held.ended_at) == ("claim", str(run), held_key, None)
    assert held.at == holds[0][2]
    assert held.message == 'held in the queue: pool at its concurrency cap "default-pool-concurrency" (1 running of 1)'

    # The first task finishes; the next claim takes the second and the hold ends then.
    db.execute("select * from ops.finalize_task(%s, %s, 'succeeded', '{}'::jsonb, null)", (first_id, lease))
    ((second_id, _),) = _claim(db, executor)
    (ended,) = _caps(gov)["default-pool-concurrency"].recent
    claimed_at = db.execute(
        "select claimed_at from ops.task_attempts where task_id = %s and attempt = 1", (second_id,)
    ).fetchone()
    assert claimed_at and ended.ended_at == claimed_at[0] and ended.ended_at >= ended.at


def test_memory_and_cores_stops_name_the_cap_they_broke(gov: GovWorld, db: psycopg.Connection) -> None:
    for draft in (
        caps.CapDraft(name="org-memory", scope="org", kind="max_memory_mb", limit=4096),
        caps.CapDraft(name="lh-memory", scope="project", project="lakehouse", kind="max_memory_mb", limit=256),
        caps.CapDraft(name="lh-cores", scope="project", project="lakehouse", kind="max_cores", limit=2),
    ):
        gov.call("org_admin", lambda c, d=draft: caps.save_cap(c, org_id=gov.org.org_id, draft=d, by=None))
    executor = add_executor(db, gov.org, pool="default", engines=["shell"], max_concurrency=2)
    run = submit(db, _tenant(gov, db), [task("big")], name="memory-hungry")
    claimed = db.execute(
        "select task_id, lease_token, limits from ops.claim_tasks((select id from ops.executors where name = %s), "
        "null, null, 1, 60)",
        (executor,),
    ).fetchone()
    assert claimed
    task_id, lease, limits = claimed
    assert limits["max_memory_mb"] == 256 and limits["max_cores"] == 2, "the claim hands the agent the tightest"
    events = [
        {"seq": 0, "type": "limits.memory_exceeded", "level": "error",
         "message": "it ran out of memory under its memory cap (max_memory_mb = 256)",
         "data": {"kind": "max_memory_mb", "limit": 256}},
        {"seq": 1, "type": "limits.cores_exceeded", "level": "error",
         "message": "it used up its CPU time under its cores cap (max_cores = 2: 120 CPU seconds)",
         "data": {"kind": "max_cores", "limit": 2, "cpu_seconds": 120}},
    ]  # fmt: skip
    db.execute("select ops.append_events(%s, %s, %s)", (task_id, lease, Jsonb(events)))
    stored = dict(
        db.execute(
            "select type, data -> 'cap' from ops.events where task_id = %s and type like 'limits.%%'", (task_id,)
        ).fetchall()
    )
    memory_cap = stored["limits.memory_exceeded"]
    assert (memory_cap["name"], memory_cap["kind"], memory_cap["scope"], memory_cap["limit"]) == (
        "lh-memory", "max_memory_mb", "project", 256
    )  # fmt: skip
    assert stored["limits.cores_exceeded"]["name"] == "lh-cores"

    listed = _caps(gov)
    (memory,) = listed["lh-memory"].recent
    assert (memory.layer, memory.run_id, memory.task_key, memory.attempt) == ("agent", str(run), "big", 1)
    assert "max_memory_mb = 256" in memory.message
    assert listed["org-memory"].recent == (), "the cap the agent was handed, not a looser one"
    (cores,) = listed["lh-cores"].recent
    assert cores.layer == "agent" and "max_cores = 2" in cores.message
    assert gov.call("stranger", lambda c: caps.refusals(c, org_id=gov.org.org_id)) == {}
