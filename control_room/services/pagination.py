"""Shared pieces of list queries: opaque keyset cursors and LIKE patterns for free-text filters."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from control_room.services.errors import Invalid


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor after a row of a newest-first (created_at, id) listing."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


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
