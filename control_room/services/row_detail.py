"""The detail lookup of a list's row: the row as the list shows it (NotFound when not visible) with its child rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows
from control_room.services.errors import visible_by_id


@dataclass(frozen=True)
class RowDetail:
    """A row of ``select columns from source where key = <id>`` (our own constant SQL) with every row of
    ``child_rows`` under ``children``. ``child_rows`` takes the row's own columns as ``%(name)s`` arguments
    (``%(id)s`` is its id), and the extra ones ``read`` is given. A row not found or not visible to the caller
    is NotFound naming "<what> <id>" on ``field``."""

    columns: str
    source: str
    key: str
    what: str
    field: str
    children: str
    child_rows: str

    async def read(self, conn: AsyncConnection, row_id: uuid.UUID, **args: Any) -> dict[str, Any]:
        """The row and its children, as dicts by column name."""
        row = await visible_by_id(conn, self.columns, self.source, self.key, row_id, what=self.what, field=self.field)
        row[self.children] = await dict_rows(conn, self.child_rows, {**row, **args})
        return row
