"""dumps_json: orjson's text for the hot lifecycle calls, the standard library's where orjson refuses."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from control_room.services.wire_json import dumps_json


def test_dumps_json_matches_the_standard_library_on_plain_values() -> None:
    value = {"seq": 3, "message": "ünïcode ✓", "data": {"rows": [1, 2.5, None, True]}}
    assert json.loads(dumps_json(value)) == value


def test_dumps_json_writes_uuids_and_datetimes_as_strings() -> None:
    task = uuid.uuid4()
    ts = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    decoded = json.loads(dumps_json({"task_id": task, "ts": ts}))
    assert decoded["task_id"] == str(task)
    assert datetime.fromisoformat(decoded["ts"]) == ts


def test_dumps_json_keeps_integers_beyond_64_bits_exact() -> None:
    big = 2**70 + 1
    assert json.loads(dumps_json({"n": big})) == {"n": big}


def test_dumps_json_keeps_non_string_keys_as_json_does() -> None:
    assert json.loads(dumps_json({1: "a"})) == {"1": "a"}
