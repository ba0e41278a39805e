"""Services own SQL (DESIGN decision 5): no SQL text or database connection use outside services/ and db/.

The check walks each module's syntax tree: string constants that read as SQL (a statement keyword with
its partner, or a reference into the ``ops`` schema) and calls that use a connection (``.execute``,
``.cursor``, ``psycopg.connect``, ``AsyncConnection.connect``) are reported with file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import control_room

PACKAGE = Path(control_room.__file__).resolve().parent
ALLOWED = ("services", "db")  # the only folders that may talk to Postgres

SQL_STATEMENT = re.compile(
    r"^\s*(select\b.*\bfrom|insert\s+into|update\b.*\bset|delete\s+from|with\b.*\bas\s*\(|(create|drop|alter)\s+"
    r"(table|database|function|index|schema)|(listen|notify)\s+\w+\s*$|show\s+\w+\s*$)",
    re.IGNORECASE | re.DOTALL,
)
OPS_REFERENCE = re.compile(r"\bops\.[a-z_]+\s*\(|\b(from|join|into|update)\s+ops\.", re.IGNORECASE)
CONNECTION_METHODS = {"execute", "executemany", "cursor", "copy"}
CONNECT_OWNERS = {"psycopg", "AsyncConnection", "Connection", "psycopg2"}


def _reads_as_sql(text: str) -> bool:
    statement = SQL_STATEMENT.search(text)
    # SQL keywords are written all lower or all upper case; "Select a status from the menu" is a UI label.
    if statement and (statement.group(1).split()[0].islower() or statement.group(1).split()[0].isupper()):
        return True
    return OPS_REFERENCE.search(text) is not None


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose that may well say "select ... from")."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _owner_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Each SQL text or connection use in ``source``, as ``file:line: what``."""
    tree = ast.parse(source, filename=filename)
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if _reads_as_sql(node.value):
                found.append(f"{filename}:{node.lineno}: SQL text {node.value.strip()[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if method in CONNECTION_METHODS:
                found.append(f"{filename}:{node.lineno}: connection use .{method}()")
            elif method == "connect" and _owner_name(node.func.value) in CONNECT_OWNERS:
                found.append(f"{filename}:{node.lineno}: opens a connection ({_owner_name(node.func.value)}.connect)")
    return found


def checked_files() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ALLOWED and ".web" not in path.parts
    ]


def test_sql_and_connections_stay_in_services_and_db() -> None:
    files = checked_files()
    assert len(files) >= 40
    found = [
        problem
        for path in files
        for problem in violations(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    ]
    assert found == [], "move these into control_room/services/ (or db/ for connection plumbing):\n" + "\n".join(found)


def test_the_check_finds_planted_sql_and_connection_use() -> None:
    planted = '''
"""A module docstring may say: select the rows from the list."""
import psycopg

LABEL = "Select a status from the menu"

def reap(conn):
    conn.execute("select ops.requeue_expired()")
    with conn.cursor() as cur:
        cur.execute(f"update ops.tasks set status = 'queued' where id = {1}")
    rows = "select id, slug\\n from ops.projects where org_id = %s"
    psycopg.connect("postgresql://x")
    return "insert into audit_log (actor) values (%s)", "WITH x AS (select 1) select * from x"
'''
    found = sorted(violations(planted, "planted.py"))
    # The docstring (line 2) and the UI label (line 5) are prose, not SQL.
    assert found == [
        "planted.py:10: SQL text \"update ops.tasks set status = 'queued' where id =\"",
        "planted.py:10: connection use .execute()",
        "planted.py:11: SQL text 'select id, slug\\n from ops.projects where org_id = %s'",
        "planted.py:12: opens a connection (psycopg.connect)",
        "planted.py:13: SQL text 'WITH x AS (select 1) select * from x'",
        "planted.py:13: SQL text 'insert into audit_log (actor) values (%s)'",
        "planted.py:8: SQL text 'select ops.requeue_expired()'",
        "planted.py:8: connection use .execute()",
        "planted.py:9: connection use .cursor()",
    ]


def test_the_check_sees_sql_inside_f_strings() -> None:
    found = violations('def f(t):\n    return f"delete from ops.{t} where id = %s"\n')
    assert found == ["<source>:2: SQL text 'delete from ops.'"]
