"""The Trino engine against the protocol-faithful test server: session, paging, types, history, cap, cancel, auth."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trino

from executor_agent.engines.base import EngineError, ResourceLimits
from executor_agent.engines.trino import TrinoEngine
from tests.engines.harness import HarnessContext
from tests.engines.sql.conftest import UNANALYZED_TABLE, MakeContext, assert_outcome, query_history
from tests.trino_server.process import TrinoTestServer, trino_test_server

NUMBERS_ROWS = 200_000
ENDLESS_QUERY = (
    "SELECT count(*) FROM UNNEST(sequence(1, 1000000)) AS a(x) CROSS JOIN UNNEST(sequence(1, 100000)) AS b(y) "
    "WHERE x + y = -1"
)


@pytest.fixture(scope="session")
def trino_tables(trino_server: TrinoTestServer) -> TrinoTestServer:
    """Tables of the session's test server, created through the official client."""
    connection = trino.dbapi.connect(host=trino_server.host, port=trino_server.port, user="setup",
                                     catalog="lakehouse", schema="default")  # fmt: skip
    cursor = connection.cursor()
    for statement in (
        f"CREATE TABLE numbers AS SELECT x, x * 2 AS doubled, 'row ' || CAST(x AS varchar) AS label "
        f"FROM UNNEST(sequence(1, {NUMBERS_ROWS})) AS t(x)",
        f"CREATE TABLE {UNANALYZED_TABLE} AS SELECT x FROM UNNEST(sequence(1, 1000)) AS t(x)",
        "CREATE TABLE audit (x bigint, doubled bigint)",
    ):
        cursor.execute(statement)
        cursor.fetchall()
    return trino_server


@pytest.fixture
def trino_env(trino_tables: TrinoTestServer, monkeypatch: pytest.MonkeyPatch) -> TrinoTestServer:
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_URL", trino_tables.url)
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_CATALOG", "lakehouse")
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_SCHEMA", "default")
    return trino_tables


def run(context: HarnessContext) -> Any:
    return TrinoEngine().run(context)


def test_a_script_runs_in_the_task_session_and_history_matches_the_server(
    trino_env: TrinoTestServer, make_context: MakeContext
) -> None:
    context = make_context(
        {
            "sql": "CREATE TABLE IF NOT EXISTS squares AS SELECT x, x * x AS sq FROM UNNEST(sequence(1, 10)) AS t(x);\n"
            "SELECT x, sq FROM squares WHERE x > 7 ORDER BY x",
            "user": "analyst",
            "roles": {"system": "reporting"},
            "client_tags": ["finance"],
            "session_properties": {"query_max_run_time": "1h"},
        },
        engine="trino",
        limits=ResourceLimits(scanned_bytes_per_query=10**9),
    )

    result = run(context)

    assert_outcome(result, "succeeded")
    assert pq.read_table(context.artifact("result-2.parquet").path).to_pylist() == [
        {"x": 8, "sq": 64}, {"x": 9, "sq": 81}, {"x": 10, "sq": 100},
    ]  # fmt: skip
    history = query_history(context)
    select = history[2]
    seen = trino_env.query(select["query_id"])
    assert seen["sql"] == "SELECT x, sq FROM squares WHERE x > 7 ORDER BY x"  # sent without the semicolon
    assert seen["state"] == "FINISHED"
    assert seen["user"] == "analyst" and seen["catalog"] == "lakehouse" and seen["schema"] == "default"
    assert seen["source"] == "lakehouse-control-room"
    assert seen["session_properties"] == {"query_max_run_time": "1h", "query_max_scan_physical_bytes": "1000000000B"}
    assert seen["client_tags"] == ["finance", f"lakehouse-run:{context.run_id}", "lakehouse-task:query"]
    assert seen["roles"] == {"system": "ROLE{reporting}"}
    assert select["state"] == "finished" and select["rows"] == 3
    assert select["query_user"] == "analyst" and select["catalog"] == "lakehouse" and select["schema_name"] == "default"
    assert select["elapsed_ms"] is not None and select["cpu_time_ms"] is not None and select["queued_ms"] is not None
    assert select["bytes_read"] > 0
    assert select["estimated_scan_bytes"] == 10 * 16  # 10 rows x (x bigint + sq bigint)
    assert history[1]["rows"] == 10  # CREATE TABLE AS: Trino's update count


def test_results_stream_page_by_page_into_parquet_row_groups(
    trino_env: TrinoTestServer, make_context: MakeContext
) -> None:
    context = make_context({"sql": "SELECT x, doubled, label FROM numbers ORDER BY x"}, engine="trino")

    result = run(context)

    assert_outcome(result, "succeeded")
    parquet = pq.ParquetFile(context.artifact("result.parquet").path)
    assert parquet.metadata.num_rows == NUMBERS_ROWS
    assert parquet.metadata.num_row_groups == 4  # 65,536 rows per row group
    assert parquet.schema_arrow == pa.schema([("x", pa.int64()), ("doubled", pa.int64()), ("label", pa.string())])
    last = parquet.read_row_group(3).to_pylist()[-1]
    assert last == {"x": NUMBERS_ROWS, "doubled": 2 * NUMBERS_ROWS, "label": f"row {NUMBERS_ROWS}"}
    preview = json.loads(context.artifact("result.preview.json").path.read_text())
    assert preview["rows"][:2] == [[1, 2, "row 1"], [2, 4, "row 2"]] and len(preview["rows"]) == 100
    record = query_history(context)[1]
    assert trino_env.query(record["query_id"])["rows_sent"] == NUMBERS_ROWS  # 20 pages of 10,000 rows
    assert record["rows"] == NUMBERS_ROWS
    assert [e for e in context.events if e.type == "artifact" or e.type.startswith("sql.statement")]


def test_trino_types_arrive_as_arrow_types(trino_env: TrinoTestServer, make_context: MakeContext) -> None:
    sql = (
        "SELECT CAST(12.30 AS decimal(10,2)) AS amount, DATE '2026-11-26' AS day, "
        "TIMESTAMP '2026-11-26 08:30:01.250' AS at, true AS flag, CAST(2.5 AS double) AS ratio, "
        "[1, 2, 3] AS numbers, {'city': 'paris', 'zone': 1} AS place, MAP(['a'], [1]) AS attrs, "
        "CAST(NULL AS varchar) AS missing"
    )
    context = make_context({"sql": sql}, engine="trino")
    assert_outcome(run(context), "succeeded")
    table = pq.read_table(context.artifact("result.parquet").path)
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("at").type == pa.timestamp("us")
    assert table.schema.field("numbers").type == pa.list_(pa.int32())
    assert table.schema.field("place").type == pa.struct([("city", pa.string()), ("zone", pa.int32())])
    assert table.schema.field("attrs").type == pa.map_(pa.string(), pa.int32())
    assert table.to_pylist() == [
        {
            "amount": Decimal("12.30"), "day": dt.date(2026, 11, 26), "at": dt.datetime(2026, 11, 26, 8, 30, 1, 250000),
            "flag": True, "ratio": 2.5, "numbers": [1, 2, 3], "place": {"city": "paris", "zone": 1},
            "attrs": [("a", 1)], "missing": None,
        }
    ]  # fmt: skip


def test_a_query_over_the_scan_cap_is_refused_before_it_runs(
    trino_env: TrinoTestServer, make_context: MakeContext
) -> None:
    sql = "INSERT INTO audit SELECT x, doubled FROM numbers"
    context = make_context({"sql": sql}, engine="trino", limits=ResourceLimits(scanned_bytes_per_query=1_000_000))

    result = run(context)

    assert_outcome(result, "failed")
    estimate = NUMBERS_ROWS * 16  # two bigint columns
    assert f"estimated scan of {estimate} bytes (3.1 MiB) exceeds the scanned-bytes cap of 1000000 bytes" in (
        result.error or ""
    )
    record = query_history(context)[1]
    assert record["state"] == "refused" and record["estimated_scan_bytes"] == estimate
    assert record["scan_cap_bytes"] == 1_000_000 and record["query_id"] is None
    sent = [q["sql"] for q in trino_env.queries() if "INSERT INTO audit" in q["sql"]]
    assert sent == [f"EXPLAIN (TYPE IO, FORMAT JSON) {sql}"], "only the EXPLAIN reached the server"


def test_an_unknown_estimate_runs_by_default_and_is_refused_on_request(
    trino_env: TrinoTestServer, make_context: MakeContext
) -> None:
    sql = f"SELECT sum(x) AS n FROM {UNANALYZED_TABLE}"
    limits = ResourceLimits(scanned_bytes_per_query=10)
    ran = make_context({"sql": sql}, engine="trino", limits=limits)
    assert_outcome(run(ran), "succeeded")
    assert query_history(ran)[1]["estimated_scan_bytes"] is None
    assert ran.events_of("sql.estimate.unknown")[0].level == "warning"

    refused = make_context({"sql": sql, "on_unknown_estimate": "refuse"}, engine="trino", limits=limits)
    result = run(refused)
    assert_outcome(result, "failed")
    assert "the scan estimate is unknown (no statistics for lakehouse.default.unanalyzed)" in (result.error or "")
    assert "scanned-bytes cap is 10 bytes" in (result.error or "")


def test_cancel_deletes_the_running_query_on_the_server(trino_env: TrinoTestServer, make_context: MakeContext) -> None:
    context = make_context({"sql": ENDLESS_QUERY}, engine="trino")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", run(context)))
    worker.start()
    running = trino_env.wait_for_query(lambda q: q["sql"] == ENDLESS_QUERY and q["state"] == "RUNNING")
    context.cancel()
    worker.join(timeout=30)

    assert not worker.is_alive()
    assert_outcome(outcome["result"], "cancelled")
    cancels = [c for c in trino_env.cancels() if c["query_id"] == running["query_id"]]
    assert cancels and cancels[0]["how"] == "DELETE nextUri" and cancels[0]["state_at_cancel"] == "RUNNING"
    record = query_history(context)[1]
    assert record["state"] == "cancelled" and record["query_id"] == running["query_id"]
    assert trino_env.wait_for_query(lambda q: q["query_id"] == running["query_id"] and q["state"] == "FAILED")


def test_engine_errors_fail_the_task_with_trino_error_names(
    trino_env: TrinoTestServer, make_context: MakeContext
) -> None:
    missing = make_context({"sql": "SELECT * FROM no_such_table"}, engine="trino")
    result = run(missing)
    assert_outcome(result, "failed")
    assert "TABLE_NOT_FOUND" in (result.error or "") and "no_such_table" in (result.error or "")
    assert query_history(missing)[1]["state"] == "failed"

    bad_property = make_context({"sql": "SET SESSION no_such_property = 1"}, engine="trino")
    result = run(bad_property)
    assert_outcome(result, "failed")
    assert "INVALID_SESSION_PROPERTY: Session property no_such_property does not exist" in (result.error or "")
    assert query_history(bad_property)[1]["query_id"] is not None


def test_use_in_a_script_moves_later_statements(trino_env: TrinoTestServer, make_context: MakeContext) -> None:
    context = make_context(
        {"sql": "CREATE SCHEMA IF NOT EXISTS lakehouse.staging; USE lakehouse.staging; "
                "CREATE TABLE IF NOT EXISTS marker AS SELECT 1 AS a; SELECT a FROM marker"},
        engine="trino",
    )  # fmt: skip
    assert_outcome(run(context), "succeeded")
    history = query_history(context)
    assert history[1]["schema_name"] == "default"
    assert history[4]["schema_name"] == "staging"
    assert trino_env.query(history[4]["query_id"])["schema"] == "staging"


def test_without_a_cluster_the_engine_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEHOUSE_EXECUTOR_TRINO_URL", raising=False)
    assert TrinoEngine.available() is False
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_URL", "http://127.0.0.1:1")
    assert TrinoEngine.available() is True


def _jwt(secret: str, subject: str) -> str:
    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    head = encode({"alg": "HS256", "typ": "JWT"}) + "." + encode({"sub": subject, "exp": time.time() + 600})
    signature = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


@pytest.mark.parametrize("auth", ["basic", "jwt"])
def test_authentication_by_configuration(
    auth: str, tmp_path: Path, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-for-tests"
    with trino_test_server(tmp_path / "server", auth=auth, users={"etl": "pw-1"}, jwt_secret=secret) as server:
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_URL", server.url)
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_USER", "etl")
        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_AUTH", auth)
        if auth == "basic":
            monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_PASSWORD", "pw-1")
        else:
            token_file = tmp_path / "token"
            token_file.write_text(_jwt(secret, "etl"))
            monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_JWT_FILE", str(token_file))
        spec = {"sql": "SELECT 42 AS answer"}

        with pytest.raises(EngineError, match="ALLOW_INSECURE_AUTH=true"):
            run(make_context(spec, engine="trino"))

        monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_ALLOW_INSECURE_AUTH", "true")
        context = make_context(spec, engine="trino")
        assert_outcome(run(context), "succeeded")
        assert server.query(query_history(context)[1]["query_id"])["principal"] == "etl"

        if auth == "basic":
            monkeypatch.setenv("LAKEHOUSE_EXECUTOR_TRINO_PASSWORD", "wrong")
        else:
            (tmp_path / "token").write_text(_jwt("another-secret", "etl"))
        denied = make_context(spec, engine="trino")
        result = run(denied)
        assert_outcome(result, "failed")
        assert "401" in (result.error or "")
