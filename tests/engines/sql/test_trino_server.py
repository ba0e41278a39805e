"""The Trino test server speaks the client protocol as documented: checked over raw HTTP, not through a client."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.trino_server.process import TrinoTestServer, trino_test_server

HEADERS = {"X-Trino-User": "protocol", "X-Trino-Catalog": "lakehouse", "X-Trino-Schema": "default"}


def submit(server: TrinoTestServer, sql: str, **headers: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/statement", content=sql, headers={**HEADERS, **headers}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def follow(first: dict[str, Any]) -> list[dict[str, Any]]:
    """Every answer of a query, following nextUri to the end."""
    answers = [first]
    while "nextUri" in answers[-1]:
        answers.append(httpx.get(answers[-1]["nextUri"], headers=HEADERS, timeout=30).json())
    return answers


def test_a_query_is_queued_then_pages_arrive_with_typed_columns_and_stats(trino_server: TrinoTestServer) -> None:
    sql = (
        "SELECT x, CAST(x AS decimal(12,3)) AS amount, 'v' || CAST(x AS varchar) AS label, "
        "[x] AS xs, {'k': x} AS r FROM UNNEST(sequence(1, 25000)) AS t(x) ORDER BY x"
    )
    first = submit(trino_server, sql)
    assert first["stats"]["state"] == "QUEUED" and first["stats"]["queued"] is True
    assert "/v1/statement/queued/" in first["nextUri"] and first["infoUri"].endswith(first["id"])
    answers = follow(first)
    columns = next(a["columns"] for a in answers if "columns" in a)
    assert columns == [
        {"name": "x", "type": "bigint", "typeSignature": {"rawType": "bigint", "arguments": []}},
        {"name": "amount", "type": "decimal(12,3)", "typeSignature": {
            "rawType": "decimal", "arguments": [{"kind": "LONG", "value": 12}, {"kind": "LONG", "value": 3}]}},
        {"name": "label", "type": "varchar", "typeSignature": {
            "rawType": "varchar", "arguments": [{"kind": "LONG", "value": 2147483647}]}},
        {"name": "xs", "type": "array(bigint)", "typeSignature": {
            "rawType": "array", "arguments": [{"kind": "TYPE", "value": {"rawType": "bigint", "arguments": []}}]}},
        {"name": "r", "type": "row(k bigint)", "typeSignature": {"rawType": "row", "arguments": [
            {"kind": "NAMED_TYPE", "value": {"fieldName": {"name": "k"},
                                             "typeSignature": {"rawType": "bigint", "arguments": []}}}]}},
    ]  # fmt: skip
    pages = [a["data"] for a in answers if "data" in a]
    assert [len(p) for p in pages] == [10_000, 10_000, 5_000]
    assert pages[0][0] == [1, "1.000", "v1", [1], [1]]
    tokens = [int(a["nextUri"].rsplit("/", 1)[1]) for a in answers if "nextUri" in a]
    assert tokens == list(range(1, len(tokens) + 1))
    last = answers[-1]
    assert "nextUri" not in last and last["stats"]["state"] == "FINISHED"
    for key in ("cpuTimeMillis", "wallTimeMillis", "queuedTimeMillis", "elapsedTimeMillis", "processedRows",
                "processedBytes", "peakMemoryBytes", "totalSplits", "completedSplits"):  # fmt: skip
        assert isinstance(last["stats"][key], int), key
    assert last["stats"]["processedRows"] == 25_000


def test_a_retried_next_uri_gets_the_same_page_again(trino_server: TrinoTestServer) -> None:
    answers = [submit(trino_server, "SELECT x FROM UNNEST(sequence(1, 20001)) AS t(x) ORDER BY x")]
    while "data" not in answers[-1]:
        answers.append(httpx.get(answers[-1]["nextUri"], timeout=30).json())
    previous_uri = answers[-2]["nextUri"]
    again = httpx.get(previous_uri, timeout=30).json()
    assert again["data"] == answers[-1]["data"] and again["nextUri"] == answers[-1]["nextUri"]


def test_errors_are_error_objects_with_trino_names(trino_server: TrinoTestServer) -> None:
    last = follow(submit(trino_server, "SELECT missing_column FROM UNNEST(sequence(1, 2)) AS t(x)"))[-1]
    assert last["stats"]["state"] == "FAILED" and "nextUri" not in last
    error = last["error"]
    assert error["errorName"] == "COLUMN_NOT_FOUND" and error["errorCode"] == 47 and error["errorType"] == "USER_ERROR"
    assert error["message"] == "line 1:1: Column 'missing_column' cannot be resolved"
    assert error["failureInfo"]["type"] == "io.trino.spi.TrinoException"

    semicolon = follow(submit(trino_server, "SELECT 1;"))[-1]["error"]
    assert semicolon["errorName"] == "SYNTAX_ERROR" and "mismatched input ';'" in semicolon["message"]
    unknown_catalog = follow(submit(trino_server, "SELECT 1", **{"X-Trino-Catalog": "nope"}))[-1]["error"]
    assert unknown_catalog["errorName"] == "CATALOG_NOT_FOUND"


def test_a_user_is_required(trino_server: TrinoTestServer) -> None:
    response = httpx.post(f"{trino_server.url}/v1/statement", content="SELECT 1", timeout=10)
    assert response.status_code == 400 and response.text == "User must be set"


def test_delete_on_next_uri_cancels_a_running_query_and_is_recorded(trino_server: TrinoTestServer) -> None:
    sql = "SELECT count(*) FROM UNNEST(sequence(1, 1000000)) AS a(x) CROSS JOIN UNNEST(sequence(1, 100000)) AS b(y) " \
          "WHERE x + y = -2"  # fmt: skip
    answer = submit(trino_server, sql)
    deadline = time.monotonic() + 20
    while answer["stats"]["state"] != "RUNNING":
        assert time.monotonic() < deadline
        answer = httpx.get(answer["nextUri"], timeout=30).json()
    deleted = httpx.delete(answer["nextUri"], timeout=10)
    assert deleted.status_code == 204
    final = httpx.get(answer["nextUri"], timeout=30).json()
    while "nextUri" in final:
        final = httpx.get(final["nextUri"], timeout=30).json()
    assert final["stats"]["state"] == "FAILED" and final["error"]["errorName"] == "USER_CANCELED"
    cancels = [c for c in trino_server.cancels() if c["query_id"] == answer["id"]]
    assert cancels[0]["how"] == "DELETE nextUri" and cancels[0]["state_at_cancel"] == "RUNNING"

    killed = submit(trino_server, sql.replace("-2", "-3"))
    assert httpx.delete(f"{trino_server.url}/v1/query/{killed['id']}", timeout=10).status_code == 204
    assert [c["how"] for c in trino_server.cancels() if c["query_id"] == killed["id"]] == ["DELETE /v1/query"]


def test_a_cancelled_query_is_failed_on_the_server_without_another_poll(trino_server: TrinoTestServer) -> None:
    """As on Trino, a DELETE ends the query on the server even if the client never polls again.

    The engine stops polling once its cancel is sent; the server used to mark the query FAILED only when
    a client read the terminal page, so whether it ever ended depended on a GET racing the DELETE (seen as
    the engine's cancel test failing now and then, first blamed on httpx 0.29, which changed nothing here).
    """
    sql = "SELECT count(*) FROM UNNEST(sequence(1, 1000000)) AS a(x) CROSS JOIN UNNEST(sequence(1, 100000)) AS b(y) " \
          "WHERE x + y = -4"  # fmt: skip
    answer = submit(trino_server, sql)
    deadline = time.monotonic() + 20
    while answer["stats"]["state"] != "RUNNING":
        assert time.monotonic() < deadline
        answer = httpx.get(answer["nextUri"], timeout=30).json()
    assert httpx.delete(answer["nextUri"], timeout=10).status_code == 204
    deadline = time.monotonic() + 20
    while (state := next(q["state"] for q in trino_server.queries() if q["query_id"] == answer["id"])) != "FAILED":
        assert state == "RUNNING" and time.monotonic() < deadline, state
        time.sleep(0.05)  # polling another process's state: nothing to await


def test_explain_io_json_reports_input_tables_with_estimates(trino_server: TrinoTestServer) -> None:
    follow(submit(trino_server, "CREATE TABLE IF NOT EXISTS explained AS SELECT x, 'abcd' AS code "
                                "FROM UNNEST(sequence(1, 500)) AS t(x)"))  # fmt: skip
    answers = follow(submit(trino_server, "EXPLAIN (TYPE IO, FORMAT JSON) SELECT code FROM explained WHERE x > 3"))
    columns = next(a["columns"] for a in answers if "columns" in a)
    assert [c["name"] for c in columns] == ["Query Plan"]
    plan = json.loads(next(a["data"] for a in answers if "data" in a)[0][0])
    (info,) = plan["inputTableColumnInfos"]
    assert info["table"] == {"catalog": "lakehouse", "schemaTable": {"schema": "default", "table": "explained"}}
    assert info["constraint"] == {"none": False, "columnConstraints": []}
    # 500 rows x (code: 4 characters on average + x: 8 bytes, read by the filter)
    assert info["estimate"]["outputRowCount"] == 500.0 and info["estimate"]["outputSizeInBytes"] == 500 * 12.0
    assert plan["estimate"]["outputSizeInBytes"] == "NaN"
    text = follow(submit(trino_server, "EXPLAIN SELECT code FROM explained"))
    assert next(a["data"] for a in text if "data" in a)[0][0]


def test_set_session_and_use_answer_with_session_headers(trino_server: TrinoTestServer) -> None:
    response = httpx.post(f"{trino_server.url}/v1/statement", content="SET SESSION query_max_run_time = '10m'",
                          headers=HEADERS, timeout=10)  # fmt: skip
    answer = response.json()
    while "nextUri" in answer:
        response = httpx.get(answer["nextUri"], timeout=10)
        answer = response.json()
    assert answer["updateType"] == "SET SESSION"
    assert response.headers["X-Trino-Set-Session"] == "query_max_run_time=10m"


@pytest.mark.parametrize("auth", ["basic", "jwt"])
def test_unauthenticated_requests_get_401_with_a_challenge(auth: str, tmp_path: Path) -> None:
    with trino_test_server(tmp_path, auth=auth, users={"a": "b"}, jwt_secret="k") as server:
        response = httpx.post(f"{server.url}/v1/statement", content="SELECT 1", headers=HEADERS, timeout=10)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == (
            'Basic realm="Trino"' if auth == "basic" else 'Bearer realm="Trino"'
        )
        if auth == "basic":
            impersonating = httpx.post(f"{server.url}/v1/statement", content="SELECT 1", headers=HEADERS,
                                       auth=("a", "b"), timeout=10)  # fmt: skip
            assert impersonating.status_code == 403
