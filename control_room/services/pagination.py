"""List queries: one filter builder (``ListQuery``), keyset pages, opaque cursors, LIKE patterns for free text."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql

from control_room.db.rows import dict_rows
from control_room.services.errors import Invalid

# One page of a list: its rows, and the cursor of the next page (None on the last page).
Page = tuple[list[dict[str, Any]], str | None]


def page_reply(page: Page) -> dict[str, Any]:
    """A page as the API answers it: ``{"items": ..., "next_cursor": ...}``."""
    items, next_cursor = page
    return {"items": items, "next_cursor": next_cursor}


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor after a row of a newest-first (created_at, id) listing."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def cursor_after(row: dict[str, Any]) -> str:
    """The cursor after a row of a newest-first listing (its ``created_at`` and ``id``)."""
    return encode_cursor(row["created_at"], row["id"])


def encode_key_cursor(key: str, row_id: uuid.UUID) -> str:
    """The cursor after a row of a list ordered by a text key (then id)."""
    return base64.urlsafe_b64encode(f"{key}|{row_id}".encode()).decode().rstrip("=")


def decode_key_cursor(cursor: str) -> tuple[str, uuid.UUID]:
    """The (key, id) a cursor of ``encode_key_cursor`` stands for; Invalid (naming `cursor`) otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        key, row_id = raw.rsplit("|", 1)
        return key, uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("not a cursor of this list; start again without it", field="cursor") from exc


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) key a cursor stands for; Invalid (naming `cursor`) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|", 1)
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("not a cursor returned by this API; start again without it", field="cursor") from exc


def escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards escaped, so a user's `%` or `_` matches itself."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Keyset:
    """The order of a keyset-paged list: a sort key and the row id that breaks ties, both SQL expressions.

    ``cast`` names the key's type when the cursor carries the key as text (``timestamptz``, ``interval``).
    """

    key: str
    row_id: str
    descending: bool = True
    cast: str | None = None

    def order_by(self) -> sql.Composable:
        direction = sql.SQL("desc" if self.descending else "asc")
        return sql.SQL("order by {key} {dir}, {row_id} {dir}").format(
            key=sql.SQL(self.key), row_id=sql.SQL(self.row_id), dir=direction
        )


def newest_first(alias: str) -> Keyset:
    """``created_at desc, id desc`` of the table aliased ``alias`` (the cursor of ``encode_cursor``)."""
    return Keyset(key=f"{alias}.created_at", row_id=f"{alias}.id")


def by_name(alias: str) -> Keyset:
    """``name asc, id asc`` of the table aliased ``alias`` (the cursor of ``name_cursor_after``)."""
    return Keyset(key=f"{alias}.name", row_id=f"{alias}.id", descending=False, cast="text")


def name_cursor_after(row: dict[str, Any]) -> str:
    """The cursor after a row of a list ordered by name (its ``name`` and ``id``)."""
    return encode_key_cursor(row["name"], row["id"])


class ListQuery:
    """The filters of one list query, added one by one (each with its arguments), then one keyset page.

    Filters given no value add nothing, so a list function reads as the list of what it can filter by.
    """

    def __init__(self) -> None:
        self._conditions: list[sql.Composable] = []
        self.args: list[Any] = []

    def add(self, condition: str, *args: Any) -> None:
        """A condition with its ``%s`` arguments, always applied."""
        self._conditions.append(sql.SQL(condition))  # our own constant SQL
        self.args.extend(args)

    def equal(self, column: str, value: Any) -> None:
        """``column = value`` unless value is None or empty."""
        if value is not None and value != "":
            self.add(f"{column} = %s", value)

    def contains(self, array_column: str, value: str | None) -> None:
        """The text array ``array_column`` holds ``value`` (when given)."""
        if value:
            self.add(f"{array_column} @> array[%s]::text[]", value)

    def one_of(self, column: str, values: Sequence[str], *, allowed: Sequence[str], field: str) -> None:
        """``column`` is one of ``values``; Invalid naming ``field`` for a value outside ``allowed``."""
        for value in values:
            if value not in allowed:
                raise Invalid(f'unknown {field} "{value}"; use one of {", ".join(allowed)}', field=field)
        if values:
            self.add(f"{column} = any(%s)", list(values))

    def matches(self, column: str, text: str | None) -> None:
        """``column`` contains ``text`` (case-insensitive, wildcards taken literally) when given."""
        if text:
            self.add(f"{column} ilike %s", f"%{escape_like(text)}%")

    def between(self, column: str, after: datetime | None, before: datetime | None) -> None:
        """``after <= column < before``, each bound only when given."""
        if after:
            self.add(f"{column} >= %s", after)
        if before:
            self.add(f"{column} < %s", before)

    def after(self, keyset: Keyset, key: Any, row_id: uuid.UUID) -> None:
        """Rows that come after (key, row_id) in ``keyset``'s order."""
        placeholder = f"%s::{keyset.cast}" if keyset.cast else "%s"
        comparison = "<" if keyset.descending else ">"
        self.add(f"({keyset.key}, {keyset.row_id}) {comparison} ({placeholder}, %s)", key, row_id)

    def conditions(self) -> sql.Composable:
        """The conditions joined by ``and`` (``true`` when there are none)."""
        return sql.SQL(" and ").join(self._conditions) if self._conditions else sql.SQL("true")

    def where(self) -> sql.Composable:
        """``where ...``, or nothing when no filter applies."""
        return sql.SQL("where ") + self.conditions() if self._conditions else sql.SQL("")

    async def page(
        self,
        conn: AsyncConnection,
        *,
        columns: str,
        source: str,
        keyset: Keyset,
        limit: int,
        cursor_of: Callable[[dict[str, Any]], str],
    ) -> Page:
        """One page of ``select columns from source`` in ``keyset`` order, and the next page's cursor."""
        statement = sql.SQL("select {cols} from {src} {where} {order} limit %s").format(
            cols=sql.SQL(columns),
            src=sql.SQL(source),
            where=self.where(),
            order=keyset.order_by(),
        )
        return trim_page(await fetch_rows(conn, statement, [*self.args, limit + 1]), limit, cursor_of)


async def fetch_rows(conn: AsyncConnection, statement: sql.Composed, args: Sequence[Any]) -> list[dict[str, Any]]:
    """Every row of one statement as dicts."""
    return await dict_rows(conn, statement, args)


def trim_page(rows: list[dict[str, Any]], limit: int, cursor_of: Callable[[dict[str, Any]], str]) -> Page:
    """Rows fetched with ``limit + 1``: the page, and the cursor after its last row when more follow."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, cursor_of(page[-1])
