"""`lakehouse api`: the contract API served alone needs the shared database and says how to give it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import Settings, get_settings


def test_api_command_without_a_database_url_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEHOUSE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["api"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "LAKEHOUSE_DATABASE_URL" in result.output


def test_api_workers_default_from_cores_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEHOUSE_API_WORKERS", raising=False)
    assert Settings().api_workers >= 1
    monkeypatch.setenv("LAKEHOUSE_API_WORKERS", "3")
    assert Settings().api_workers == 3
