"""Events as the contract accepts them: valid types and levels, text Postgres can store, bounded sizes.

Cleaning happens when an event is recorded, before it reaches the spool, so a re-send can never be
refused for its content (a refused batch could only be dropped, leaving a gap in the attempt's seq).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,60}$")
LEVELS = ("debug", "info", "warning", "error")
MAX_MESSAGE_CHARS = 65536
MAX_DATA_BYTES = 256 * 1024
MAX_RESULT_BYTES = 1024 * 1024
_TRUNCATED = " …[truncated]"


def clean_text(value: str, *, limit: int | None = None) -> str:
    """Text without NUL characters or unpaired surrogates (Postgres refuses both), cut to ``limit`` chars."""
    text = value.replace("\x00", "\ufffd")
    text = text.encode("utf-8", "replace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[: limit - len(_TRUNCATED)] + _TRUNCATED
    return text


def clean_json(value: Any) -> Any:
    """A JSON-safe copy: cleaned strings (keys too), finite numbers, anything else as its text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean_json(v) for v in value]
    return clean_text(str(value))


def bounded_json(value: Mapping[str, Any], *, limit: int, what: str) -> dict[str, Any]:
    """``clean_json`` of a mapping, replaced by a note when its JSON is larger than ``limit`` bytes."""
    cleaned = clean_json(value)
    size = len(json.dumps(cleaned).encode())
    if size > limit:
        return {"truncated": True, "note": f"{what} was {size} bytes of JSON; at most {limit} are kept"}
    return dict(cleaned)


def make_event(type: str, message: str, *, level: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """One event body (without ``seq``, which the spool assigns); ValueError naming a bad type or level."""
    if not EVENT_TYPE.match(type):
        raise ValueError(
            f"event type {type!r} is invalid: lower-case letters, digits, '_' and '.', starting with a letter"
        )
    if level not in LEVELS:
        raise ValueError(f"event level {level!r} is invalid: one of {', '.join(LEVELS)}")
    return {
        "ts": datetime.now(UTC).isoformat(),
        "type": type,
        "level": level,
        "message": clean_text(message, limit=MAX_MESSAGE_CHARS),
        "data": bounded_json(data or {}, limit=MAX_DATA_BYTES, what="the event's data"),
    }
