"""Schema drift: compares the live ``ops`` schema (made by the migrations) with control_room/db/tables.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL, MetaData, Table, UniqueConstraint, create_engine, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.exc import CompileError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeEngine

from control_room.db.tables import OPS_METADATA, SCHEMA

TABLES_FILE = "control_room/db/tables.py"
_IN_DB_ONLY = f"exists in the database but not in {TABLES_FILE}"
_IN_MODELS_ONLY = f"is in {TABLES_FILE} but not in the database"
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def sqlalchemy_url(database_url: str) -> URL:
    """The SQLAlchemy URL (psycopg 3 driver) of a libpq URL or ``key=value`` conninfo string.

    Accepts what psycopg accepts, e.g. ``postgresql://u:p@host:5432/db``, a Unix-socket URL such as
    ``postgresql://postgres:@/db?host=/run/pg``, or ``host=/run/pg dbname=db user=postgres``; a URL
    that already names a SQLAlchemy driver (``postgresql+psycopg://``) only gets its driver set.
    Every libpq parameter but the database is passed through the query, where SQLAlchemy hands it
    to ``psycopg.connect`` unchanged (this keeps socket directories and multi-host lists intact).
    """
    scheme = database_url.partition("://")[0] if "://" in database_url else ""
    if "+" in scheme:
        return make_url(database_url).set(drivername="postgresql+psycopg")
    params = {key: str(value) for key, value in conninfo_to_dict(database_url).items()}
    database = params.pop("dbname", None)
    return URL.create("postgresql+psycopg", database=database, query=params)


@dataclass(frozen=True)
class _Column:
    type: str
    nullable: bool


@dataclass(frozen=True)
class _ForeignKey:
    columns: tuple[str, ...]
    target: str  # schema.table
    target_columns: tuple[str, ...]
    ondelete: str

    def describe(self) -> str:
        text = f"foreign key {_columns_list(self.columns)} -> {self.target} {_columns_list(self.target_columns)}"
        return text if self.ondelete == "NO ACTION" else f"{text} on delete {self.ondelete.lower()}"


@dataclass(frozen=True)
class _TableShape:
    """The parts of a table that drift is checked on, from either side."""

    columns: dict[str, _Column]
    primary_key: tuple[str, ...]
    uniques: frozenset[tuple[str, ...]]
    foreign_keys: frozenset[_ForeignKey]


def type_name(type_: TypeEngine[Any]) -> str:
    """A type as Postgres spells it (``UUID``, ``TEXT[]``, ``TIMESTAMP WITH TIME ZONE``, ...)."""
    try:
        compiled = type_.compile(dialect=_DIALECT)
    except CompileError:  # e.g. NullType, reflected from a type SQLAlchemy does not know
        compiled = type(type_).__name__
    return " ".join(compiled.upper().split())


def _ondelete(value: str | None) -> str:
    return " ".join((value or "NO ACTION").upper().split())


def _model_shape(table: Table) -> _TableShape:
    uniques = {
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }
    # Column(unique=True) may not appear as a constraint object until DDL time; count it either way.
    uniques |= {(c.name,) for c in table.columns if c.unique}
    return _TableShape(
        columns={c.name: _Column(type_name(c.type), bool(c.nullable)) for c in table.columns},
        primary_key=tuple(c.name for c in table.primary_key.columns),
        uniques=frozenset(uniques),
        foreign_keys=frozenset(
            _ForeignKey(
                columns=tuple(fk.parent.name for fk in constraint.elements),
                target=f"{constraint.elements[0].column.table.schema}.{constraint.referred_table.name}",
                target_columns=tuple(fk.column.name for fk in constraint.elements),
                ondelete=_ondelete(constraint.ondelete),
            )
            for constraint in table.foreign_key_constraints
        ),
    )


def _db_shape(
    schema: str,
    columns: Iterable[ReflectedColumn],
    primary_key: Mapping[str, Any],
    uniques: Iterable[Mapping[str, Any]],
    foreign_keys: Iterable[Mapping[str, Any]],
) -> _TableShape:
    return _TableShape(
        columns={c["name"]: _Column(type_name(c["type"]), bool(c["nullable"])) for c in columns},
        primary_key=tuple(primary_key.get("constrained_columns") or ()),
        uniques=frozenset(tuple(u["column_names"]) for u in uniques),
        foreign_keys=frozenset(
            _ForeignKey(
                columns=tuple(fk["constrained_columns"]),
                target=f"{fk.get('referred_schema') or schema}.{fk['referred_table']}",
                target_columns=tuple(fk["referred_columns"]),
                ondelete=_ondelete((fk.get("options") or {}).get("ondelete")),
            )
            for fk in foreign_keys
        ),
    )


def _reflect(database_url: str, schema: str) -> dict[str, _TableShape]:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            names = inspector.get_table_names(schema=schema)
            if not names:
                return {}
            columns = inspector.get_multi_columns(schema=schema, filter_names=names)
            pks = inspector.get_multi_pk_constraint(schema=schema, filter_names=names)
            uniques = inspector.get_multi_unique_constraints(schema=schema, filter_names=names)
            fks = inspector.get_multi_foreign_keys(schema=schema, filter_names=names)
    finally:
        engine.dispose()
    return {
        name: _db_shape(
            schema,
            columns.get((schema, name), []),
            pks.get((schema, name)) or {},
            uniques.get((schema, name), []),
            fks.get((schema, name), []),
        )
        for name in names
    }


def _columns_list(columns: tuple[str, ...]) -> str:
    return f"({', '.join(columns)})" if columns else "(none)"


def _compare_table(qualified: str, db: _TableShape, model: _TableShape) -> list[str]:
    problems: list[str] = []
    for name, column in db.columns.items():
        if name not in model.columns:
            problems.append(f"{qualified}.{name}: column {_IN_DB_ONLY}")
            continue
        mirrored = model.columns[name]
        if column.type != mirrored.type:
            problems.append(
                f"{qualified}.{name}: type is {column.type} in the database but {mirrored.type} in {TABLES_FILE}"
            )
        if column.nullable != mirrored.nullable:
            problems.append(
                f"{qualified}.{name}: column is {_nullability(column.nullable)} in the database but "
                f"{_nullability(mirrored.nullable)} in {TABLES_FILE}"
            )
    problems.extend(f"{qualified}.{name}: column {_IN_MODELS_ONLY}" for name in model.columns if name not in db.columns)
    if db.primary_key != model.primary_key:
        problems.append(
            f"{qualified}: primary key is {_columns_list(db.primary_key)} in the database but "
            f"{_columns_list(model.primary_key)} in {TABLES_FILE}"
        )
    problems.extend(f"{qualified}: unique {_columns_list(u)} {_IN_DB_ONLY}" for u in sorted(db.uniques - model.uniques))
    problems.extend(
        f"{qualified}: unique {_columns_list(u)} {_IN_MODELS_ONLY}" for u in sorted(model.uniques - db.uniques)
    )
    by_columns = sorted(db.foreign_keys - model.foreign_keys, key=lambda fk: fk.describe())
    problems.extend(f"{qualified}: {fk.describe()} {_IN_DB_ONLY}" for fk in by_columns)
    by_columns = sorted(model.foreign_keys - db.foreign_keys, key=lambda fk: fk.describe())
    problems.extend(f"{qualified}: {fk.describe()} {_IN_MODELS_ONLY}" for fk in by_columns)
    return problems


def _nullability(nullable: bool) -> str:
    return "nullable" if nullable else "NOT NULL"


def schema_drift(database_url: str, metadata: MetaData = OPS_METADATA, *, schema: str = SCHEMA) -> list[str]:
    """Every difference between the live ``schema`` and ``metadata``'s tables in it; empty when they agree.

    Compared per table: presence, columns (name, type as Postgres spells it, nullability), primary key,
    unique constraints and foreign keys. Defaults, checks, indexes, triggers and policies are the
    migrations' alone and are not compared.
    """
    live = _reflect(database_url, schema)
    mirrored = {table.name: _model_shape(table) for table in metadata.tables.values() if table.schema == schema}
    problems: list[str] = []
    for name in sorted(live.keys() | mirrored.keys()):
        qualified = f"{schema}.{name}"
        if name not in mirrored:
            problems.append(f"{qualified}: table {_IN_DB_ONLY}")
        elif name not in live:
            problems.append(f"{qualified}: table {_IN_MODELS_ONLY}")
        else:
            problems.extend(_compare_table(qualified, live[name], mirrored[name]))
    return problems


def check_schema_drift(database_url: str, *, echo: Callable[[str], object] = print) -> int:
    """Report drift through ``echo`` for a command line; returns the exit status (0: none, 1: drift)."""
    problems = schema_drift(database_url)
    if not problems:
        echo(f"{TABLES_FILE} matches the {SCHEMA} schema of the database.")
        return 0
    for line in problems:
        echo(line)
    echo(
        f"{len(problems)} difference(s) between the database and {TABLES_FILE}: the migrations in "
        f"supabase/migrations own the schema, so change {TABLES_FILE} to match them (or add a migration)."
    )
    return 1
