"""Where a DuckDB profile writes: the agent's one persistent warehouse unless the spec names a file, never
the attempt's work folder (deleted afterwards); the namespace names that file the OpenLineage way."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor_agent.engines.dbt_support.profiles import dataset_namespace, write_profile
from executor_agent.engines.dbt_support.spec import DEFAULT_PROFILE
from executor_agent.engines.duckdb import DuckdbSettings


def settings(tmp_path: Path) -> DuckdbSettings:
    return DuckdbSettings(database=tmp_path / "data" / "warehouse" / "warehouse.duckdb", data_dir=tmp_path / "lake")


def test_duckdb_folder_is_created_for_a_fresh_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "data" / "dbt-demo" / "shop.duckdb"
    generated = write_profile(
        {"type": "duckdb", "path": str(warehouse)}, target=None, env={}, directory=tmp_path / "profiles",
        warehouse=settings(tmp_path),
    )  # fmt: skip
    assert warehouse.parent.is_dir()
    assert generated.output["path"] == str(warehouse)
    assert dataset_namespace(generated.output) == f"duckdb://{warehouse}"


def test_the_default_profile_writes_to_the_agents_persistent_warehouse(tmp_path: Path) -> None:
    shared = settings(tmp_path)
    first = write_profile(DEFAULT_PROFILE, target=None, env={}, directory=tmp_path / "a", warehouse=shared)
    second = write_profile(DEFAULT_PROFILE, target=None, env={}, directory=tmp_path / "b", warehouse=shared)

    assert first.output["path"] == second.output["path"] == str(shared.database)
    assert (tmp_path / "data" / "warehouse").is_dir()
    assert dataset_namespace(first.output) == f"duckdb://{shared.database}"


def test_the_default_follows_the_duckdb_engines_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE", str(tmp_path / "env" / "wh.duckdb"))
    generated = write_profile(
        DEFAULT_PROFILE, target=None, env={}, directory=tmp_path / "p", warehouse=DuckdbSettings()
    )
    assert generated.output["path"] == str(tmp_path / "env" / "wh.duckdb")


def test_relative_duckdb_path_lands_in_the_data_dir_not_the_work_dir(tmp_path: Path) -> None:
    generated = write_profile(
        {"type": "duckdb", "path": "nested/wh.duckdb"}, target=None, env={}, directory=tmp_path / "profiles",
        warehouse=settings(tmp_path),
    )  # fmt: skip
    assert generated.output["path"] == str((tmp_path / "lake" / "nested" / "wh.duckdb").resolve())
    assert (tmp_path / "lake" / "nested").is_dir()


def test_memory_and_motherduck_paths_stay_as_they_are(tmp_path: Path) -> None:
    for path in (":memory:", "md:shop"):
        generated = write_profile(
            {"type": "duckdb", "path": path}, target=None, env={}, directory=tmp_path / "p",
            warehouse=settings(tmp_path),
        )  # fmt: skip
        assert generated.output["path"] == path
    assert dataset_namespace({"type": "duckdb", "path": "md:shop"}) == "duckdb://md%3Ashop"
