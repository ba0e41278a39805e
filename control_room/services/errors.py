"""Domain errors raised by services, and the translation of the SQL layer's SQLSTATEs into them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg

from control_room.db.rows import Args, Statement, first_dict_row


class ServiceError(Exception):
    """An error a caller can act on; ``status`` is the HTTP status the API answers with, ``title`` its problem
    title. A subclass names its own in its header: ``class NotFound(ServiceError, status=404, title="Not found")``."""

    status = 400
    title = "Bad request"

    def __init_subclass__(cls, *, status: int | None = None, title: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if title is not None:
            cls.title = title

    def __init__(self, message: str, *, field: str | None = None, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors  # every problem found, each with field, pointer and message


class Unauthorized(ServiceError, status=401, title="Unauthorized"):
    pass


class Forbidden(ServiceError, status=403, title="Forbidden"):
    pass


class NotFound(ServiceError, status=404, title="Not found"):
    pass


RowT = TypeVar("RowT")


def visible(row: RowT | None, what: str, *, field: str) -> RowT:
    """The row a lookup found; NotFound ("<what> does not exist or is not visible to you") when it found none:
    RLS hides the rows of other orgs and projects, so "absent" and "not yours" answer alike."""
    if row is None:
        raise NotFound(f"{what} does not exist or is not visible to you", field=field)
    return row


async def visible_row(
    conn: psycopg.AsyncConnection, statement: Statement, args: Args, what: str, *, field: str
) -> dict[str, Any]:
    """The first row of one statement as a dict; NotFound as in ``visible`` when it returns none."""
    return visible(await first_dict_row(conn, statement, args), what, field=field)


async def visible_by_id(
    conn: psycopg.AsyncConnection, columns: str, source: str, key: str, row_id: uuid.UUID, *, what: str, field: str
) -> dict[str, Any]:
    """The row of ``select columns from source where key = row_id`` (our own constant SQL) as a dict; NotFound
    naming "<what> <row_id>" as in ``visible`` when there is none: the detail lookup of a list's row."""
    return await visible_row(
        conn, f"select {columns} from {source} where {key} = %s", (row_id,), f"{what} {row_id}", field=field
    )


async def found_row(
    conn: psycopg.AsyncConnection, statement: Statement, args: Args, missing: ServiceError
) -> dict[str, Any]:
    """The first row of one statement as a dict; raises ``missing`` when it returns none (a lookup whose
    refusal is its own, not ``visible_row``'s NotFound)."""
    row = await first_dict_row(conn, statement, args)
    if row is None:
        raise missing
    return row


def the_only_id(rows: Sequence[Sequence[Any]], what: str, *, field: str, hint: str) -> uuid.UUID:
    """The id (first column) of the one row a lookup of ``what`` by name found (it asks for two at most):
    NotFound as in ``visible`` when it found none, Invalid ("<what> exists in several projects; pass <hint>")
    when the name matched several."""
    if len(rows) > 1:
        raise Invalid(f"{what} exists in several projects; pass {hint}", field=field)
    return uuid.UUID(str(visible(rows[0] if rows else None, what, field=field)[0]))


class Conflict(ServiceError, status=409, title="Conflict"):
    pass


class LeaseLost(Conflict, title="Lease lost"):
    pass


class Invalid(ServiceError, status=422, title="Invalid request"):
    pass


class CapExceeded(ServiceError, status=429, title="Cap reached"):
    def __init__(
        self,
        message: str,
        *,
        record: dict[str, Any] | None = None,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message, field=field, errors=errors)
        # A refused submit's row (ops.pending_submit_refusal): recorded again once the transaction has rolled
        # back (control_room.services.auth.scoped), so the refusal is listed beside its cap.
        self.record = record


_BY_SQLSTATE: dict[str, type[ServiceError]] = {
    "LH401": Unauthorized,
    "LH403": Forbidden,
    "LH404": NotFound,
    "LH409": LeaseLost,
    "LH422": Invalid,
    "LH423": Conflict,
    "LH429": CapExceeded,
    "42501": Forbidden,  # insufficient_privilege (RLS or grants)
    "23505": Conflict,  # unique_violation
    "23503": Invalid,  # foreign_key_violation
    "23514": Invalid,  # check_violation
    "23502": Invalid,  # not_null_violation
    "22P02": Invalid,  # invalid_text_representation (bad uuid, bad json)
    "22007": Invalid,  # invalid_datetime_format
    "22008": Invalid,  # datetime_field_overflow
    "22003": Invalid,  # numeric_value_out_of_range
    "22023": Invalid,  # invalid_parameter_value
    "22P05": Invalid,  # untranslatable_character
    "22021": Invalid,  # character_not_in_repertoire (NUL bytes)
}


def from_db_error(exc: psycopg.Error) -> ServiceError | None:
    """The domain error for a database error the caller caused, or None for a server fault."""
    state = exc.sqlstate or ""
    if not state and isinstance(exc, psycopg.DataError):
        # Raised by the driver before sending, e.g. a NUL character in a text value.
        if "NUL" in str(exc):
            return Invalid("a value contains a NUL (0x00) character, which no text can hold here; remove it")
        return Invalid(f"a value cannot be stored: {exc}")
    kind = _BY_SQLSTATE.get(state)
    if kind is None and state.startswith("22"):
        kind = Invalid
    if kind is None:
        return None
    diag = exc.diag
    message = diag.message_primary or str(exc)
    field = diag.column_name or None
    if state == "LH422" and field and message.startswith(field + ": "):
        message = message[len(field) + 2 :]
    return kind(message, field=field)
