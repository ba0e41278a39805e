"""Settings: defaults work in development, production refuses the built-in development secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from control_room.config import PROJECT_ROOT, Settings


def test_development_defaults_work(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAKEHOUSE_ENV", "LAKEHOUSE_SESSION_SECRET", "LAKEHOUSE_PORT", "LAKEHOUSE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.env == "development"
    assert settings.port == 3000
    assert settings.pgdata_dir == PROJECT_ROOT / ".lakehouse" / "pgdata"


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_ENV", "production")
    monkeypatch.delenv("LAKEHOUSE_SESSION_SECRET", raising=False)
    with pytest.raises(ValidationError, match="LAKEHOUSE_SESSION_SECRET"):
        Settings()


def test_production_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_ENV", "production")
    monkeypatch.setenv("LAKEHOUSE_SESSION_SECRET", "0f7c1e9a4b2d48e6a1c3b5d7e9f0a2c4")
    assert Settings().env == "production"


def test_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_PORT", "3310")
    assert Settings().port == 3310
