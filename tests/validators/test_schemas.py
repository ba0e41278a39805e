"""The JSON Schemas published under spec/ are the ones the models generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import control_room.validators.schemas as schemas
from control_room.bundle.models import bundle_json_schema
from control_room.validators.schemas import PUBLISHED_SCHEMAS, check_schemas, render_schema


def test_published_schemas_are_up_to_date() -> None:
    result = check_schemas()
    assert result.status == "passed", result.details
    for path, generate in PUBLISHED_SCHEMAS.items():
        assert json.loads(path.read_text(encoding="utf-8")) == generate()
        assert path.read_text(encoding="utf-8") == render_schema(generate())


def test_a_stale_schema_fails_naming_the_file_and_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "bundle.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(schemas, "PUBLISHED_SCHEMAS", {stale: bundle_json_schema})

    result = check_schemas()

    assert result.status == "failed"
    assert result.details == ["spec/bundle.schema.json differs from its model"]
    assert "lakehouse validate schemas --write" in result.summary
    assert schemas.write_schemas() == [stale]
    assert check_schemas().status == "passed"
