"""Read-only SQL guardrails shared by dashboards and NL→SQL: one SELECT, known tables and functions, a LIMIT.

The statement is parsed with sqlglot; what runs is the SQL generated back from the checked tree, so a
comment or a second statement cannot slip past the check. The database still enforces the real rules
(RLS and grants as the viewer, a read-only transaction); this check keeps the statement to what a
dashboard or a question may do, and names what it refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING

from control_room.services.errors import Invalid

if TYPE_CHECKING:  # sqlglot takes most of a second to import: loaded by the calls that parse, not at start-up
    from sqlglot import exp


@cache
def _writes() -> tuple[type[exp.Expression], ...]:
    """Statements (anywhere in the tree) that write, change the session or the schema."""
    from sqlglot import exp

    return (
        exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Set,
        exp.TruncateTable, exp.Into, exp.Copy, exp.Pragma, exp.Use, exp.Transaction, exp.Commit, exp.Rollback,
    )  # fmt: skip


@cache
def _file_readers() -> tuple[type[exp.Expression], ...]:
    """Functions that read files or URLs (DuckDB's readers), refused wherever they appear."""
    from sqlglot import exp

    return tuple(getattr(exp, name) for name in ("ReadCSV", "ReadParquet", "ReadJSON") if hasattr(exp, name))


# Functions sqlglot does not model that a read-only query may call (it knows the common SQL ones).
SAFE_FUNCTIONS = frozenset({
    "jsonb_array_elements", "jsonb_array_elements_text", "jsonb_typeof", "jsonb_object_keys",
    "percentile_cont", "percentile_disc", "date_part", "date_bin", "to_char", "age", "quantile_cont",
    "median", "strftime", "epoch",
})  # fmt: skip


def parse_read_only(
    text: str,
    *,
    dialect: str,
    field: str,
    table_allowed: Callable[[exp.Table], str | None],
) -> exp.Query:
    """The one SELECT in ``text``, checked: no writes, tables accepted by ``table_allowed`` (it returns the
    reason a table is refused, or None), only known functions. Raises Invalid naming ``field``."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    writes, file_readers = _writes(), _file_readers()
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        raise Invalid(f"the SQL does not parse: {first}", field=field) from exc
    except TokenError as exc:  # an unterminated string or identifier, before any parsing
        raise Invalid(f"the SQL does not parse: {exc}", field=field) from exc
    if len(statements) != 1:
        raise Invalid(f"exactly one statement is allowed (found {len(statements)})", field=field)
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise Invalid(f"only read-only SELECT statements are allowed (found {statement.key.upper()})", field=field)
    for node in statement.walk():
        if isinstance(node, writes):
            raise Invalid(f"only read-only statements are allowed ({node.key.upper()} is not)", field=field)
        if file_readers and isinstance(node, file_readers):
            raise Invalid(f"reading files is not allowed here ({node.sql(dialect)})", field=field)
        if isinstance(node, exp.Anonymous) and node.name.lower() not in SAFE_FUNCTIONS:
            raise Invalid(f"function {node.name}() is not allowed here", field=field)
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        if not table.name:  # a table function in FROM: only named datasets may be read
            raise Invalid(f"table functions are not allowed here ({table.sql(dialect)})", field=field)
        if not table.db and table.name.lower() in ctes:
            continue
        reason = table_allowed(table)
        if reason is not None:
            raise Invalid(reason, field=field)
    return statement


def bind_placeholders(statement: exp.Query, values: Mapping[str, exp.Expression], *, field: str) -> exp.Query:
    """Replace each ``:name`` with its value (a literal or typed NULL); unknown names are refused."""
    from sqlglot import exp

    tree = statement.copy()
    for placeholder in list(tree.find_all(exp.Placeholder)):
        value = values.get(placeholder.name)
        if value is None:
            known = ", ".join(f":{name}" for name in sorted(values))
            raise Invalid(f"unknown parameter :{placeholder.name} (known: {known})", field=field)
        placeholder.replace(value.copy())
    return tree


def typed_literal(value: str | None, sql_type: str) -> exp.Expression:
    """``CAST('value' AS type)``, or a typed NULL: how parameters are bound into checked SQL."""
    from sqlglot import exp

    literal: exp.Expression = exp.Null() if value is None else exp.Literal.string(value)
    return exp.Cast(this=literal, to=exp.DataType.build(sql_type))


def with_limit(statement: exp.Query, limit: int) -> exp.Query:
    """The statement with a LIMIT of at most ``limit`` rows (a smaller LIMIT already there is kept)."""
    from sqlglot import exp

    current = statement.args.get("limit")
    if current is not None:
        amount = current.expression if isinstance(current, exp.Limit) else None
        if isinstance(amount, exp.Literal) and amount.is_int and int(amount.this) <= limit:
            return statement
    return statement.limit(limit, copy=True)
