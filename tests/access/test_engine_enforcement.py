"""The DuckDB engine under access policies: a masked, filtered read returns masked values in its result and
preview, a denied read fails the task naming the dataset and the privilege, and history records the refusal."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from executor_agent.engines.duckdb import DuckdbEngine
from tests.access.test_red_team import EMAILS, SETUP, masked, policies
from tests.engines.harness import ContextFactory
from tests.engines.sql.conftest import query_history


def test_a_query_task_returns_masked_filtered_rows_and_a_denied_one_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "warehouse.duckdb"
    (tmp_path / "lake").mkdir()
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATA_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE", str(database))
    with ContextFactory(tmp_path / "contexts", engine="duckdb", task_key="query") as make_context:
        run_both(make_context, database)


def run_both(make_context: ContextFactory, database: Path) -> None:
    with duckdb.connect(str(database)) as con:
        for statement in SETUP:
            con.execute(statement)
    acl = policies("hash", catalog="warehouse", schema="main")
    context = make_context({"sql": "select id, email from customers order by id"}, policies=acl)
    result = DuckdbEngine().run(context)
    assert result.outcome == "succeeded", result.error
    preview = json.loads(context.artifact("result.preview.json").path.read_text())
    assert preview["rows"] == [[1, masked(EMAILS[0])], [3, masked(EMAILS[2])]]
    assert any(e.type == "sql.statement.rewritten" for e in context.events)

    denied = make_context({"sql": "select 1; select salary from payroll"}, policies=acl)
    result = DuckdbEngine().run(denied)
    assert result.outcome == "failed" and result.result["retryable"] is False
    assert "may not read dataset warehouse.main.payroll (missing privilege read" in str(result.error)
    assert query_history(denied)[2]["state"] == "refused"
    # The refusal event carries what the control plane records in the access audit.
    (refusal,) = [e for e in denied.events if e.type == "sql.statement.refused"]
    assert refusal.data["access"]["dataset"] == "warehouse.main.payroll"
    assert refusal.data["access"]["privilege"] == "read"
    assert refusal.data["access"]["reason"].startswith("denied by policy")
    assert not [a.name for a in denied.artifacts if a.name.startswith("result-2")]
