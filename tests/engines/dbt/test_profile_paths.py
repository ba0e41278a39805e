"""A DuckDB profile may point into a folder that does not exist yet (the demo's fresh data dir)."""

from __future__ import annotations

from pathlib import Path

from executor_agent.engines.dbt_support.profiles import write_profile


def test_duckdb_folder_is_created_for_a_fresh_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "data" / "dbt-demo" / "shop.duckdb"
    generated = write_profile(
        {"type": "duckdb", "path": str(warehouse)}, target=None, env={}, directory=tmp_path / "profiles",
        work_dir=tmp_path / "work",
    )
    assert warehouse.parent.is_dir()
    assert generated.output["path"] == str(warehouse)


def test_relative_duckdb_path_lands_in_the_work_dir(tmp_path: Path) -> None:
    generated = write_profile(
        {"type": "duckdb", "path": "nested/wh.duckdb"}, target=None, env={}, directory=tmp_path / "profiles",
        work_dir=tmp_path / "work",
    )
    assert generated.output["path"] == str((tmp_path / "work" / "nested" / "wh.duckdb").resolve())
    assert (tmp_path / "work" / "nested").is_dir()
