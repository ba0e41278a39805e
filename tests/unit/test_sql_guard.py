"""The read-only SQL guard shared by Ask, dashboards and Superset: whatever the text, a refusal is an Invalid
naming the field (a 422), never an exception the API answers with a 500."""

from __future__ import annotations

import pytest

from control_room.services.errors import Invalid
from control_room.services.sql_guard import parse_read_only


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # Found by the contract fuzzer: an unterminated quote fails in sqlglot's tokenizer, before parsing.
        ("\x7f\x0b\x89\x07\xbe x\xe0'\x11\x03", "does not parse"),
        ("select 'open", "does not parse"),
        ("select from where", "does not parse"),
        ("select 1; select 2", "exactly one statement"),
        ("delete from t", "only read-only"),
    ],
)
def test_refusals_are_invalid_naming_the_field(text: str, says: str) -> None:
    with pytest.raises(Invalid, match=says) as refused:
        parse_read_only(text, dialect="duckdb", field="sql", table_allowed=lambda _table: None)
    assert refused.value.field == "sql"


def test_a_select_passes() -> None:
    statement = parse_read_only("select 1 as one", dialect="duckdb", field="sql", table_allowed=lambda _table: None)
    assert statement.sql() == "SELECT 1 AS one"
