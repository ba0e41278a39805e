"""JSON text for the hot lifecycle calls (claims, events, finalize batches): orjson, with the standard
library for the few values orjson refuses, so what reaches Postgres never changes."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_json(value: Any) -> str:
    """``value`` as JSON text; UUIDs and datetimes become strings as with ``json.dumps(default=str)``."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits and non-string keys: json keeps them exact where orjson refuses.
        return json.dumps(value, default=str)
