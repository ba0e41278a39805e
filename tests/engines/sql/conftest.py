"""Fixtures of the SQL engine tests: harness task contexts, the warehouse folders, one Trino test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor_agent.engines.base import EngineResult
from tests.engines.harness import ContextFactory, HarnessContext
from tests.opt_in import deselect_unless_configured
from tests.trino_server.process import TrinoTestServer, trino_test_server


def query_history(context: HarnessContext) -> dict[int, dict[str, Any]]:
    """The latest reported history row of each statement."""
    latest: dict[int, dict[str, Any]] = {}
    for operation, payload in context.reports:
        assert operation in ("queries", "lineage")
        for row in payload.get("queries", []) if operation == "queries" else []:
            latest[row["statement_index"]] = row
    return latest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked real_trino need a real cluster: without TRINO_URL they are deselected, not skipped."""
    deselect_unless_configured(config, items, marker="real_trino", variable="TRINO_URL")


MakeContext = ContextFactory
UNANALYZED_TABLE = "unanalyzed"  # the session's test server has no statistics for it (IO plan estimates NaN)


@pytest.fixture
def make_context(tmp_path: Path) -> Iterator[ContextFactory]:
    """``make_context(spec, engine=..., limits=..., timeout_s=...)``: a fresh harness context under tmp_path
    (a DuckDB task keyed ``query`` unless the call says otherwise)."""
    with ContextFactory(tmp_path / "contexts", engine="duckdb", task_key="query") as factory:
        yield factory


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lake folder and a warehouse file of the test's own, set through the engine's settings."""
    lake = tmp_path / "lake"
    lake.mkdir()
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATA_DIR", str(lake))
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE", str(tmp_path / "warehouse.duckdb"))
    return lake


@pytest.fixture(scope="session")
def trino_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrinoTestServer]:
    """One protocol-faithful Trino test server process for the session (no authentication)."""
    with trino_test_server(
        tmp_path_factory.mktemp("trino-server"), tables_without_stats=(f"lakehouse.default.{UNANALYZED_TABLE}",)
    ) as server:
        yield server


def assert_outcome(result: EngineResult, outcome: str) -> None:
    assert result.outcome == outcome, f"expected {outcome}, got {result.outcome}: {result.error} {result.result}"
