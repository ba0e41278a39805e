"""The Trino engine against a real cluster: opt-in with ``TRINO_URL`` (deselected while it is unset).

Needs the ``tpch`` catalog (present in Trino's own container image). Optional: ``TRINO_USER``,
``TRINO_PASSWORD`` (basic) or ``TRINO_JWT``; ``TRINO_ALLOW_INSECURE_AUTH=true`` to send them over http.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

import pytest
import trino

from executor_agent.engines.base import ResourceLimits
from executor_agent.engines.trino import TrinoEngine
from tests.engines.harness import HarnessContext
from tests.engines.sql.conftest import MakeContext, assert_outcome, query_history

pytestmark = pytest.mark.real_trino
QUERY_ID = re.compile(r"^\d{8}_\d{6}_\d{5}_\w{5}$")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> str:
    url = os.environ["TRINO_URL"]
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_URL", url)
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_USER", os.environ.get("TRINO_USER", "lakehouse"))
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_CATALOG", "tpch")
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_SCHEMA", "tiny")
    if os.environ.get("TRINO_PASSWORD"):
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_AUTH", "basic")
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_PASSWORD", os.environ["TRINO_PASSWORD"])
    elif os.environ.get("TRINO_JWT"):
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_AUTH", "jwt")
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_JWT", os.environ["TRINO_JWT"])
    if os.environ.get("TRINO_ALLOW_INSECURE_AUTH"):
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_ALLOW_INSECURE_AUTH", os.environ["TRINO_ALLOW_INSECURE_AUTH"])
    return url


def run(context: HarnessContext) -> Any:
    return TrinoEngine().run(context)


def test_a_tpch_query_streams_and_records_history(cluster: str, make_context: MakeContext) -> None:
    context = make_context(
        {"sql": "SELECT nationkey, name, regionkey FROM nation ORDER BY nationkey"},
        engine="trino",
        limits=ResourceLimits(scanned_bytes_per_query=10**9),
    )
    assert_outcome(run(context), "succeeded")
    record = query_history(context)[1]
    assert record["state"] == "finished" and record["rows"] == 25
    assert QUERY_ID.match(record["query_id"]) and record["elapsed_ms"] is not None
    assert record["estimated_scan_bytes"] is not None and record["estimated_scan_bytes"] > 0


def test_a_scan_over_the_cap_is_refused_before_it_runs(cluster: str, make_context: MakeContext) -> None:
    context = make_context(
        {"sql": "SELECT * FROM tpch.sf1.lineitem"}, engine="trino", limits=ResourceLimits(scanned_bytes_per_query=1000)
    )
    result = run(context)
    assert_outcome(result, "failed")
    assert "exceeds the scanned-bytes cap of 1000 bytes" in (result.error or "")
    assert query_history(context)[1]["state"] == "refused"


def test_cancel_reaches_the_cluster(cluster: str, make_context: MakeContext) -> None:
    context = make_context({"sql": "SELECT count(*) FROM tpch.sf1000.lineitem a, tpch.sf1000.orders b"},
                           engine="trino")  # fmt: skip
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", run(context)))
    worker.start()
    deadline = time.monotonic() + 60
    while not any(row["state"] == "running" for _, p in context.reports for row in p["queries"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)  # the engine runs in another thread
    time.sleep(1)  # let the query reach RUNNING on the cluster
    context.cancel()
    worker.join(timeout=60)
    assert_outcome(outcome["result"], "cancelled")
    query_id = query_history(context)[1]["query_id"]
    parsed = cluster.split("://", 1)[1]
    host, _, port = parsed.partition(":")
    connection = trino.dbapi.connect(host=host, port=int(port or 8080), user="lakehouse", catalog="system")
    cursor = connection.cursor()
    cursor.execute("SELECT state, error_code FROM system.runtime.queries WHERE query_id = ?", [query_id])
    assert cursor.fetchall() == [["FAILED", "USER_CANCELED"]]
