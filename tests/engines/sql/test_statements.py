"""Splitting SQL scripts into statements: semicolons inside literals and comments never split."""

from __future__ import annotations

import re

import pytest

from executor_agent.engines.sql_support.statements import StatementSyntaxError, split_statements


def test_a_script_splits_at_top_level_semicolons_only() -> None:
    script = """
        -- a comment; with a semicolon
        SELECT 'a;b' AS x, "odd;name" FROM t;   /* block; comment */
        INSERT INTO t VALUES ('it''s; fine');
        ;;
        SELECT 1 -- trailing; comment
    """
    statements = split_statements(script)
    assert [s.index for s in statements] == [1, 2, 3]
    assert statements[0].text.endswith("""SELECT 'a;b' AS x, "odd;name" FROM t""")
    assert statements[1].text.startswith("/* block; comment */")
    assert statements[1].text.endswith("VALUES ('it''s; fine')")
    assert statements[2].text == "SELECT 1 -- trailing; comment"


def test_statement_kinds_decide_what_explain_can_estimate() -> None:
    kinds = {
        s.text: (s.keyword, s.explainable)
        for s in split_statements(
            "-- lead\nSELECT 1; WITH a AS (SELECT 1) SELECT * FROM a; (SELECT 2); INSERT INTO t SELECT 1;"
            "CREATE TABLE t2 AS SELECT 1; CREATE TABLE t3 (a int); SET SESSION x = 1; USE c.s; SHOW TABLES"
        )
    }
    assert kinds == {
        "-- lead\nSELECT 1": ("SELECT", True),
        "WITH a AS (SELECT 1) SELECT * FROM a": ("WITH", True),
        "(SELECT 2)": ("SELECT", True),
        "INSERT INTO t SELECT 1": ("INSERT", True),
        "CREATE TABLE t2 AS SELECT 1": ("CREATE", True),
        "CREATE TABLE t3 (a int)": ("CREATE", False),
        "SET SESSION x = 1": ("SET", False),
        "USE c.s": ("USE", False),
        "SHOW TABLES": ("SHOW", False),
    }


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("SELECT 'open", "unterminated string literal starting at line 1, column 8"),
        ('SELECT 1;\nSELECT "open', "unterminated quoted identifier starting at line 2, column 8"),
        ("SELECT 1 /* open", "unterminated /* comment starting at line 1, column 10"),
    ],
)
def test_unterminated_literals_are_named_with_their_position(script: str, message: str) -> None:
    with pytest.raises(StatementSyntaxError, match=re.escape(message)):
        split_statements(script)


def test_a_script_of_comments_has_no_statements() -> None:
    assert split_statements("-- nothing\n/* at all */ ;  ; ") == []
