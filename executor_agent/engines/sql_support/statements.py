"""Split a SQL script into statements at top-level semicolons, and say what kind each statement is.

The splitter knows the lexical rules that can hide a semicolon: '…' string literals (with '' escapes),
"…" quoted identifiers (with "" escapes), -- line comments and /* … */ block comments. Semicolons
inside those never end a statement. Statements that are only whitespace and comments are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Statements whose scan can be estimated by EXPLAIN before they run (reads of tables).
EXPLAINABLE_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "INSERT", "DELETE", "UPDATE", "MERGE"})
_CREATE_TABLE_AS = re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?TABLE\s.*?\bAS\b", re.IGNORECASE | re.DOTALL)
_LEADING_KEYWORD = re.compile(r"[A-Za-z]+")


class StatementSyntaxError(ValueError):
    """The script cannot be split: an unterminated string, identifier or comment."""


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its 1-based position, its text (without the final semicolon)."""

    index: int
    text: str

    @property
    def keyword(self) -> str:
        """The first keyword, upper-cased (``SELECT``, ``WITH``, ``CREATE`` …); empty when there is none."""
        body = strip_leading_comments(self.text).lstrip("( \t\r\n")
        match = _LEADING_KEYWORD.match(body)
        return match.group(0).upper() if match else ""

    @property
    def explainable(self) -> bool:
        """Whether the statement reads tables in a way EXPLAIN can estimate (queries, DML, CREATE TABLE AS)."""
        if self.keyword in EXPLAINABLE_KEYWORDS:
            return True
        return self.keyword == "CREATE" and bool(_CREATE_TABLE_AS.match(strip_leading_comments(self.text)))


def strip_leading_comments(text: str) -> str:
    """The text without leading whitespace and comments."""
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if text.startswith("--", position):
            newline = text.find("\n", position)
            position = len(text) if newline < 0 else newline + 1
        elif text.startswith("/*", position):
            end = text.find("*/", position + 2)
            position = len(text) if end < 0 else end + 2
        else:
            return text[position:]


def split_statements(script: str) -> list[Statement]:
    """The statements of a script, in order; raises StatementSyntaxError naming where a literal is unterminated."""
    statements: list[str] = []
    start = 0
    position = 0
    length = len(script)
    while position < length:
        char = script[position]
        if char in ("'", '"'):
            position = _end_of_quoted(script, position, char)
        elif script.startswith("--", position):
            newline = script.find("\n", position)
            position = length if newline < 0 else newline + 1
        elif script.startswith("/*", position):
            end = script.find("*/", position + 2)
            if end < 0:
                raise StatementSyntaxError(f"unterminated /* comment starting at {_where(script, position)}")
            position = end + 2
        elif char == ";":
            statements.append(script[start:position])
            position += 1
            start = position
        else:
            position += 1
    statements.append(script[start:])
    texts = [text.strip() for text in statements if strip_leading_comments(text).strip()]
    return [Statement(index=i, text=text) for i, text in enumerate(texts, start=1)]


def _end_of_quoted(script: str, position: int, quote: str) -> int:
    """Index just past the literal opened at ``position``; a doubled quote is an escaped quote."""
    cursor = position + 1
    while True:
        found = script.find(quote, cursor)
        if found < 0:
            kind = "string literal" if quote == "'" else "quoted identifier"
            raise StatementSyntaxError(f"unterminated {kind} starting at {_where(script, position)}")
        if script.startswith(quote * 2, found):
            cursor = found + 2
            continue
        return found + 1


def _where(script: str, position: int) -> str:
    line = script.count("\n", 0, position) + 1
    column = position - (script.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"
