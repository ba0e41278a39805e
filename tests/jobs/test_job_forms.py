"""The job page's pure parts: the run form generated from a params schema, the side-by-side version diff,
the schedule editor's draft and preview, and the p95 of the history chart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from control_room.services.errors import Invalid
from control_room.specs.forms import field_of, form_fields, initial_values, typed_params
from control_room.state.job.history import p95
from control_room.state.job.schedules import draft_of, preview_rows
from control_room.state.job.versions import side_by_side

SCHEMA = {
    "type": "object",
    "properties": {
        "day": {"type": "string", "description": "YYYY-MM-DD"},
        "mode": {"type": "string", "enum": ["delta", "full", "1"], "default": "delta"},
        "level": {"enum": [1, 2, 3]},
        "batch": {"type": "integer", "default": 100},
        "ratio": {"type": "number"},
        "dry_run": {"type": "boolean", "default": True},
        "tables": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["day"],
}


def test_the_form_has_one_field_per_property_with_type_required_default_and_enum() -> None:
    fields = form_fields(SCHEMA)
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("day", "string", True), ("mode", "enum", False), ("level", "enum", False), ("batch", "integer", False),
        ("ratio", "number", False), ("dry_run", "boolean", False), ("tables", "json", False),
    ]  # fmt: skip
    assert fields[0].label == "day *" and fields[0].description == "YYYY-MM-DD"
    assert fields[1].options == ["delta", "full", "1"] and fields[2].options == ["1", "2", "3"]
    assert initial_values(fields) == {
        "day": "", "mode": "delta", "level": "", "batch": "100", "ratio": "", "dry_run": "true", "tables": "",
    }  # fmt: skip
    assert form_fields({"type": "object"}) == []


def test_typed_params_give_each_text_its_type_and_name_the_field_that_does_not_fit() -> None:
    fields = form_fields(SCHEMA)
    values = {"day": " 2026-12-01 ", "mode": "full", "level": "2", "batch": "250", "ratio": "0.5",
              "dry_run": "false", "tables": '["a", "b"]'}  # fmt: skip
    assert typed_params(fields, values) == {
        "day": "2026-12-01", "mode": "full", "level": 2, "batch": 250, "ratio": 0.5, "dry_run": False,
        "tables": ["a", "b"],
    }  # fmt: skip
    assert typed_params(fields, {"dry_run": "true"}) == {"dry_run": True}  # empty texts are left to the schema
    # An enum option keeps its type: the string "1" of mode, the number 1 of level.
    assert typed_params(fields, {"mode": "1", "level": "1", "dry_run": "false"}) == {"mode": "1", "level": 1,
                                                                                     "dry_run": False}  # fmt: skip
    with pytest.raises(Invalid) as bad:
        typed_params(fields, {"batch": "many"})
    assert (bad.value.field, bad.value.message) == ("/params/batch", "must be a whole number")
    with pytest.raises(Invalid) as bad_json:
        typed_params(fields, {"tables": "[a"})
    assert bad_json.value.field == "/params/tables"
    assert field_of("/params/batch") == "batch" and field_of("/params/tables/0") == "tables" and field_of("x") == ""


def test_the_diff_pairs_changed_lines_and_keeps_both_sides_aligned() -> None:
    rows = side_by_side("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n")
    assert [(r.left_no, r.left, r.right_no, r.right, r.kind) for r in rows] == [
        ("1", "a", "1", "a", "equal"), ("2", "b", "2", "B", "replace"), ("3", "c", "3", "c", "equal"),
        ("4", "d", "4", "d", "equal"), ("", "", "5", "e", "insert"),
    ]  # fmt: skip
    removed = side_by_side("x\ny\n", "x\n")
    assert [(r.left, r.right, r.kind) for r in removed] == [("x", "x", "equal"), ("y", "", "delete")]


def test_the_schedule_draft_reads_numbers_and_params_and_names_what_does_not() -> None:
    values = {"name": "n", "environment": "dev", "cron": "0 2 * * *", "timezone": "", "params": '{"a": 1}',
              "catchup": "latest", "catchup_limit": "10", "overlap": "skip", "jitter_s": "0",
              "misfire_grace_s": "60", "description": ""}  # fmt: skip
    draft = draft_of(values, enabled=False)
    assert (draft.timezone, draft.params, draft.catchup_limit, draft.enabled) == ("UTC", {"a": 1}, 10, False)
    for change, field in (({"jitter_s": "x"}, "jitter_s"), ({"params": "[1]"}, "params"), ({"params": "{"}, "params")):
        with pytest.raises(Invalid) as bad:
            draft_of({**values, **change}, enabled=True)
        assert bad.value.field == field


def test_the_preview_lists_ten_fires_in_both_zones_and_nothing_for_a_bad_cron() -> None:
    now = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)  # Berlin falls back on the 25th
    rows = preview_rows("30 2 * * *", "Europe/Berlin", "Asia/Tokyo", now)
    assert len(rows) == 10
    assert rows[0].schedule_zone == "Sun 2026-10-25 02:30 CEST" and rows[0].viewer_zone == "Sun 2026-10-25 09:30 JST"
    assert rows[1].schedule_zone == "Mon 2026-10-26 02:30 CET" and rows[1].viewer_zone == "Mon 2026-10-26 10:30 JST"
    assert preview_rows("61 * * * *", "UTC", "UTC", now) == []


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(n) for n in range(1, 101)]) == 95.0
    assert p95([float(n) for n in range(1, 21)]) == 19.0
