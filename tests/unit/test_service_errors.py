"""the_only_id: a lookup by name answers with its one id, NotFound when it found none, Invalid when several."""

from __future__ import annotations

import uuid

import pytest

from control_room.services.errors import Invalid, NotFound, the_only_id

WHAT = 'schedule "nightly"'
NAMING = {"field": "schedule", "hint": "PROJECT/NAME"}


def test_the_one_row_gives_its_id() -> None:
    wanted = uuid.uuid4()
    assert the_only_id([(str(wanted),)], WHAT, **NAMING) == wanted


def test_no_row_is_not_found_with_the_missing_message() -> None:
    with pytest.raises(NotFound) as caught:
        the_only_id([], WHAT, **NAMING)
    assert (caught.value.message, caught.value.field) == (
        'schedule "nightly" does not exist or is not visible to you',
        "schedule",
    )


def test_two_rows_are_invalid_with_the_ambiguous_message() -> None:
    with pytest.raises(Invalid) as caught:
        the_only_id([(uuid.uuid4(),), (uuid.uuid4(),)], WHAT, **NAMING)
    assert (caught.value.message, caught.value.field) == (
        'schedule "nightly" exists in several projects; pass PROJECT/NAME',
        "schedule",
    )
