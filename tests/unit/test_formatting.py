"""How the UI's result tables (dashboards' table panels, Ask) show a cell: instants in words a person reads."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from control_room.services.result_rows import json_cell
from control_room.state.formatting import cell_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        # What a dataset's timestamptz becomes in JSON, in UTC or another zone: seconds in UTC.
        (json_cell(dt.datetime(2026, 12, 6, 13, 42, 23, 893919, tzinfo=dt.UTC)), "2026-12-06 13:42:23 UTC"),
        ("2026-12-06T14:42:23.5+01:00", "2026-12-06 13:42:23 UTC"),
        # A timestamp without a zone stays as it is, without the "T" and the fraction.
        (json_cell(dt.datetime(2026, 12, 6, 13, 42, 23, 5)), "2026-12-06 13:42:23"),
        # Dates, texts that only start like an instant, and everything else: as they are.
        (json_cell(dt.date(2026, 12, 6)), "2026-12-06"),
        ("2026-12-06T99:99 is not a time", "2026-12-06T99:99 is not a time"),
        ("Margaret Hamilton", "Margaret Hamilton"),
        (42, "42"),
        (1.5, "1.5"),
        (True, "True"),
        (json_cell(uuid.UUID(int=1)), "00000000-0000-0000-0000-000000000001"),
        (None, ""),
    ],
)
def test_a_result_cell_is_shown_as_text_with_instants_in_utc(value: object, shown: str) -> None:
    assert cell_text(value) == shown
