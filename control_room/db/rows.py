"""Rows of one statement: a psycopg row factory that validates each row into a table's SQLModel class (no
ORM session), and the dict rows of a statement whose columns no single table holds.

The classes of control_room/db/tables.py mirror the migrations column for column (the drift test
keeps them honest), so a ``select *`` of a table validates into its class; services return those
objects where they return whole table rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import BaseRowFactory, RowMaker, dict_row
from sqlmodel import SQLModel

ModelT = TypeVar("ModelT", bound=SQLModel)

# Columns whose name is reserved by SQLAlchemy's declarative classes get a trailing underscore there.
_RENAMED = {"metadata": "metadata_"}


def field_names(columns: Sequence[str]) -> list[str]:
    """The model field of each result column."""
    return [_RENAMED.get(name, name) for name in columns]


def model_rows(model: type[ModelT]) -> BaseRowFactory[ModelT]:
    """A row factory for ``conn.cursor(row_factory=...)`` that returns validated ``model`` instances."""

    def factory(cursor: Any) -> RowMaker[ModelT]:
        names = field_names([column.name for column in cursor.description or ()])

        def make(values: Sequence[Any]) -> ModelT:
            return model.model_validate(dict(zip(names, values, strict=True)))

        return make

    return factory


# A statement and its arguments, as psycopg's ``execute`` takes them.
Statement = str | sql.Composable
Args = Sequence[Any] | Mapping[str, Any] | None


async def dict_rows(conn: AsyncConnection, statement: Statement, args: Args = None) -> list[dict[str, Any]]:
    """Every row of one statement (our own constant SQL), as dicts by column name."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, args)  # type: ignore[arg-type]  # str of our own constant SQL
        return await cur.fetchall()


async def first_dict_row(conn: AsyncConnection, statement: Statement, args: Args = None) -> dict[str, Any] | None:
    """The first row of one statement as a dict, or None when it returns none."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, args)  # type: ignore[arg-type]  # str of our own constant SQL
        return await cur.fetchone()


async def _first_tuple(conn: AsyncConnection, statement: Statement, args: Args) -> tuple[Any, ...] | None:
    cur = await conn.execute(statement, args)  # type: ignore[arg-type]  # str of our own constant SQL
    return await cur.fetchone()


async def scalar(conn: AsyncConnection, statement: Statement, args: Args = None) -> Any:
    """The first column of the first row of one statement (a count, an ops function's answer, ``insert ...
    returning``), or None when it returns no row."""
    row = await _first_tuple(conn, statement, args)
    return None if row is None else row[0]


async def one_row(conn: AsyncConnection, statement: Statement, args: Args = None) -> tuple[Any, ...]:
    """The one row a statement always returns (an ops function's answer, ``insert ... returning``, an
    aggregate), as a tuple."""
    row = await _first_tuple(conn, statement, args)
    assert row is not None, "the statement returned no row"
    return row


async def returned_id(conn: AsyncConnection, statement: Statement, args: Args = None) -> uuid.UUID:
    """The id a statement returns in the first column of its one row (``insert ... returning id``, or an ops
    function that answers with the id it saved)."""
    return uuid.UUID(str(await scalar(conn, statement, args)))


async def model_list(
    conn: AsyncConnection, model: type[ModelT], statement: Statement, args: Args = None
) -> list[ModelT]:
    """Every row of one statement (a ``select *`` of ``model``'s table, or of a function returning its rows),
    validated into ``model``."""
    async with conn.cursor(row_factory=model_rows(model)) as cur:
        await cur.execute(statement, args)  # type: ignore[arg-type]  # str of our own constant SQL
        return await cur.fetchall()


async def first_model(
    conn: AsyncConnection, model: type[ModelT], statement: Statement, args: Args = None
) -> ModelT | None:
    """The first row of one statement validated into ``model``, or None when it returns none."""
    async with conn.cursor(row_factory=model_rows(model)) as cur:
        await cur.execute(statement, args)  # type: ignore[arg-type]  # str of our own constant SQL
        return await cur.fetchone()
