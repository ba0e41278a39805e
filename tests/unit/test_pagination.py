"""The shared keyset of name-ordered lists (datasets, catalog, job templates) and its cursors."""

from __future__ import annotations

import uuid

import pytest

from control_room.services.errors import Invalid
from control_room.services.pagination import ListQuery, by_name, decode_key_cursor, name_cursor_after


def test_a_name_cursor_round_trips_names_holding_the_separator_and_any_text() -> None:
    row_id = uuid.uuid4()
    for name in ("orders", "a|b|c", "schéma.table", ""):
        assert decode_key_cursor(name_cursor_after({"name": name, "id": row_id})) == (name, row_id)


def test_a_cursor_of_another_list_is_refused_naming_the_cursor() -> None:
    with pytest.raises(Invalid) as refused:
        decode_key_cursor("bm90IGEgY3Vyc29y")  # "not a cursor": no id after the separator
    assert refused.value.field == "cursor"


def test_by_name_orders_ascending_and_resumes_after_the_cursor_row() -> None:
    keyset = by_name("d")
    assert keyset.order_by().as_string(None) == "order by d.name asc, d.id asc"
    query = ListQuery()
    row_id = uuid.uuid4()
    query.after(keyset, *decode_key_cursor(name_cursor_after({"name": "m", "id": row_id})))
    assert query.where().as_string(None) == "where (d.name, d.id) > (%s::text, %s)"
    assert query.args == ["m", row_id]
