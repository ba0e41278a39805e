"""NL→SQL: a question becomes SQL over the datasets the asker may read, shown for review before it runs.

Two translators behind one interface: the built-in deterministic one (the embedded default, below) for
the common shapes (counts, sums, averages, min/max, top-N, group by, time ranges, filters on known
values, joins along known relationships), honest about a word it cannot map; and any OpenAI-compatible
chat endpoint (``LAKEHOUSE_NL2SQL_URL`` / ``_MODEL`` / ``_API_KEY``: vLLM, Ollama, llama.cpp) given the
schema as context. Both go through the same guardrails (``guard``): sqlglot parse, one read-only
statement, only readable tables and unmasked columns, a LIMIT; then, on the agent, the viewer's access
policies and the scanned-bytes cap checked by EXPLAIN before the statement runs (``ask_task_spec``).

Who may read what is an ``AccessPolicy``. Until issue 22's access policies land it is the viewer's
project role: every catalog dataset of the project they can see (RLS on ops.datasets), nothing masked;
``access_policy`` is the one place to swap in the policy engine (tables refused, columns masked).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import httpx
from psycopg import AsyncConnection

from control_room.config import get_settings
from control_room.db.rows import dict_rows, first_dict_row, model_rows, returned_id, scalar
from control_room.services.errors import Invalid, found_row
from control_room.services.sql_guard import parse_read_only, with_limit

if TYPE_CHECKING:  # sqlglot (most of a second) and the SQLModel mirror: imported by the calls that use them
    from sqlglot import exp

    from control_room.db.tables import Nl2sqlQuestion

MAX_ROWS = 1_000
DIALECT = "duckdb"
PROVIDER_BUILTIN = "builtin"


@dataclass
class Table:
    """A readable table: its columns (name -> type) and descriptions, and its key column when known."""

    name: str
    columns: dict[str, str]
    descriptions: dict[str, str] = field(default_factory=dict)
    description: str = ""
    key: str | None = None
    values: dict[str, list[str]] = field(default_factory=dict)  # sample values of low-cardinality columns


@dataclass
class Relationship:
    """``child.column`` references ``parent.parent_column`` (default: the same name): a dbt relationships test,
    one carried along column lineage to the datasets built from its two sides, or a shared key column."""

    child: str
    parent: str
    column: str
    parent_column: str = ""
    source: str = "key"  # "dbt" (a relationships test), "lineage" (carried from one) or "key" (same key column)

    def __post_init__(self) -> None:
        self.parent_column = self.parent_column or self.column

    def on(self, joined: str, alias: str) -> str:
        """The join condition of ``joined`` (one side of this relationship) as ``alias`` to the base table ``t``."""
        mine, theirs = (self.column, self.parent_column) if joined == self.child else (self.parent_column, self.column)
        return f"{alias}.{mine} = t.{theirs}"


@dataclass
class AccessPolicy:
    """What the asker may read: tables by name and masked columns (``table.column``)."""

    tables: dict[str, Table]
    relationships: list[Relationship] = field(default_factory=list)
    masked: set[str] = field(default_factory=set)
    database: str | None = None  # the DuckDB file the tables live in (from the catalog's namespace)


@dataclass
class Translation:
    """SQL to review, or a refusal saying why (and what was close)."""

    sql: str | None
    message: str
    provider: str = PROVIDER_BUILTIN

    @property
    def refused(self) -> bool:
        return self.sql is None


class Refusal(Exception):
    """The question cannot (or may not) be answered; the message says why."""


# Guardrails -------------------------------------------------------------------------------------------


def guard(sql: str, policy: AccessPolicy, *, limit: int = MAX_ROWS) -> str:
    """The SQL as it may run: one read-only SELECT on readable tables, no masked column, at most ``limit`` rows."""
    from sqlglot import exp

    def table_allowed(table: exp.Table) -> str | None:
        if table.name.lower() in policy.tables and table.db.lower() in ("", "main"):
            return None
        readable = ", ".join(sorted(policy.tables)) or "none"
        return f"table {table.sql(DIALECT)} is not a dataset you may read (readable: {readable})"

    statement = parse_read_only(sql, dialect=DIALECT, field="sql", table_allowed=table_allowed)
    if policy.masked:
        aliases = {t.alias_or_name.lower(): t.name.lower() for t in statement.find_all(exp.Table)}
        tables = set(aliases.values())
        for column in statement.find_all(exp.Column):
            owners = [aliases.get(column.table.lower(), column.table.lower())] if column.table else sorted(tables)
            for owner in owners:
                if f"{owner}.{column.name.lower()}" in policy.masked:
                    raise Invalid(f"column {owner}.{column.name} is masked for you", field="sql")
        projected = [e for select in statement.find_all(exp.Select) for e in select.expressions]
        if any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
               for e in projected):  # fmt: skip
            masked_here = [m for m in policy.masked if m.split(".", 1)[0] in tables]
            if masked_here:
                raise Invalid(f"select * would read masked columns ({', '.join(sorted(masked_here))})", field="sql")
    return with_limit(statement, limit).sql(DIALECT, pretty=True)


# The built-in translator ----------------------------------------------------------------------------

_WRITE_WORDS = re.compile(
    r"\b(delete|drop|insert|update|truncate|alter|create|remove|erase|wipe|overwrite|grant|revoke|set)\b"
)
_STOP_WORDS = """
    a an the of by per for each in on at to from with
    and or is are was were be been what which who whom whose how
    many much me show list give get find tell all any do does did
    there their its it this that these those have has had number count total
    sum average avg mean top bottom most least highest lowest largest smallest maximum minimum
    max min than more less over under between since before after during last first
    ever please i we you our my per day days week weeks month months
    year years what's whats into as only amount amounts value values overall across grouped
    group broken down split along where across distinct unique different much many each every
    ordered order orders customer customers event events
"""
_STOP = set(_STOP_WORDS.split())
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10}  # fmt: skip
_MONTH_NAMES = "january february march april may june july august september october november december"
_MONTHS = {name: i + 1 for i, name in enumerate(_MONTH_NAMES.split())}
# Words people use for a column (matched against column names and descriptions too).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "amount": ("amount", "revenue", "sales", "spend", "spent", "value", "money", "order amount", "order total"),
    "lifetime_amount": ("lifetime amount", "lifetime value", "lifetime spend", "ltv", "total spent"),
    "country_code": ("country", "countries", "nation"),
    "full_name": ("name", "names", "full name", "customer name", "customer names"),
    "status": ("status", "statuses", "state"),
    "ordered_on": ("order date", "ordered", "date", "day", "placed"),
    "signed_up_on": ("signed up", "signup", "sign up", "sign-up", "joined", "registration"),
    "event_type": ("event type", "event types", "kind of event"),
    "order_count": ("order count", "number of orders per customer"),
    "checkout_count": ("checkouts", "checkout count"),
    "event_count": ("event count",),
}
# Nouns that name a table's rows; the first readable table of the list answers.
ENTITIES: dict[str, tuple[str, ...]] = {
    "orders": ("fct_orders", "stg_orders", "raw_orders"),
    "customers": ("dim_customers", "stg_customers", "raw_customers"),
    "events": ("fct_customer_events", "stg_events"),
    "activity": ("customer_activity",),
}
_ENTITY_WORDS = {"order": "orders", "orders": "orders", "purchases": "orders", "purchase": "orders",
                 "customer": "customers", "customers": "customers", "clients": "customers", "client": "customers",
                 "buyers": "customers", "people": "customers", "users": "customers", "event": "events",
                 "events": "events", "activity": "activity", "clicks": "events"}  # fmt: skip


@dataclass
class _Plan:
    table: str = ""
    aggregate: str | None = None  # count, sum, avg, min, max
    measure: str | None = None  # column aggregated
    group: list[tuple[str, str]] = field(default_factory=list)  # (table, column)
    where: list[tuple[str, str, str, str]] = field(default_factory=list)  # (table or "", column or "", op, literal)
    joins: set[str] = field(default_factory=set)
    order_desc: bool = True
    limit: int | None = None
    distinct_of: str | None = None


class Translator:
    """The built-in deterministic translator over one access policy."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    # Vocabulary ---------------------------------------------------------------------------------------

    def _entity_table(self, entity: str) -> str | None:
        return next((t for t in ENTITIES.get(entity, ()) if t in self.policy.tables), None)

    def _columns_for(self, phrase: str, prefer: list[str]) -> list[tuple[str, str]]:
        """(table, column) pairs a phrase names, in the tables of ``prefer`` first."""
        found: list[tuple[str, str]] = []
        tables = prefer + [t for t in self.policy.tables if t not in prefer]
        for table in tables:
            for column in self.policy.tables[table].columns:
                words = (column.replace("_", " "), column, *SYNONYMS.get(column, ()))
                if phrase in words:
                    found.append((table, column))
        return found

    def _known_words(self) -> list[str]:
        words = set(_ENTITY_WORDS)
        for table in self.policy.tables.values():
            for column in table.columns:
                words.update(column.split("_"))
                words.update(w for s in SYNONYMS.get(column, ()) for w in s.split())
                for values in table.values.get(column, []):
                    words.update(str(values).lower().split())
        return sorted(words)

    def _suggest(self, word: str) -> str:
        columns = sorted({c for t in self.policy.tables.values() for c in t.columns})
        close = difflib.get_close_matches(word, columns + self._known_words(), n=3, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(repr(c) for c in close)}?"
            if close
            else (f"; columns you can ask about: {', '.join(columns[:12])}")
        )
        return f"I can't map '{word}' to a column{hint}"

    # Translation --------------------------------------------------------------------------------------

    def translate(self, question: str) -> Translation:
        """SQL for the question, or a refusal naming what could not be mapped."""
        try:
            sql = self._translate(question)
            return Translation(guard(sql, self.policy), "Review the SQL, edit it if needed, then run it.")
        except Refusal as exc:
            return Translation(None, str(exc))
        except Invalid as exc:
            return Translation(None, exc.message)

    def _translate(self, question: str) -> str:
        text = question.lower().strip().rstrip("?.!")
        text = re.sub(r"[,;]", " ", text)
        if _WRITE_WORDS.search(text):
            raise Refusal("I only answer questions that read data; changing data is not something I do")
        plan = _Plan()
        used: set[str] = set()
        # Which rows: the entity named (orders by default when a money word appears).
        entities = [_ENTITY_WORDS[w] for w in re.findall(r"[a-z_]+", text) if w in _ENTITY_WORDS]
        self._check_tables_named(text)
        text = self._time_range(text, plan, used)
        text = self._value_filters(text, plan, used)
        top = re.search(r"\b(top|bottom|best|worst|first)\s+(\d+|" + "|".join(_NUMBER_WORDS) + r")\b", text)
        if top:
            plan.limit = int(top.group(2)) if top.group(2).isdigit() else _NUMBER_WORDS[top.group(2)]
            plan.order_desc = top.group(1) in ("top", "best", "first")
            used.update(top.group(0).split())
        plan.aggregate, plan.measure = self._aggregate(text, used)
        group_phrase = re.search(r"\b(?:by|per|for each|for every|each|grouped by|broken down by)\s+([a-z_ ]+?)"
                                 r"(?:\s+(?:by|with|in|for|from|since|before|after|during|between|sorted|ordered)\b|$)",
                                 text)  # fmt: skip
        named = list(entities)
        counted = re.search(r"\bby\s+(?:the\s+)?(?:number of|count of)\s+([a-z]+)", text)
        if counted and counted.group(1) in _ENTITY_WORDS:  # "customers by number of orders": count the orders
            entities.insert(0, _ENTITY_WORDS[counted.group(1)])
            used.update(counted.group(0).split())
        subject = self._subject(entities, plan)
        plan.table = subject
        if plan.measure is None and plan.aggregate in ("sum", "avg", "min", "max"):
            raise Refusal(
                "I can't tell which column to "
                + {"sum": "add up", "avg": "average", "min": "take the minimum of", "max": "take the maximum of"}[
                    plan.aggregate
                ]
                + "; name it (e.g. 'amount')"
            )
        if plan.measure is not None:
            plan.table = self._measure_table(plan, entities)
        measured_by = group_phrase is not None and set(group_phrase.group(1).split()) <= used | _STOP
        top_noun = re.search(r"\b(?:top|bottom|best|worst)\s+\S+\s+([a-z_]+)\s+by\b", text)
        if top and (not group_phrase or measured_by) and named and named[0] != self._entity_of(plan.table):
            self._group_by_entity(named[0], plan, used)  # "top 5 customers by amount": one row per customer
        elif top and top_noun and top_noun.group(1) not in _ENTITY_WORDS and plan.aggregate is not None:
            self._group(top_noun.group(1), plan, used)  # "top 2 countries by revenue": one row per country
        elif group_phrase and not set(group_phrase.group(1).split()) <= used:
            self._group(group_phrase.group(1).strip(), plan, used)
        self._leftover_words(text, used, plan)
        return self._sql(plan)

    def _check_tables_named(self, text: str) -> None:
        columns = {c for t in self.policy.tables.values() for c in t.columns}
        for name in re.findall(r"\b[a-z]+_[a-z_]+\b", text):
            if name not in self.policy.tables and name not in columns:
                raise Refusal(f"'{name}' is not a dataset you may read")
        for masked in sorted(self.policy.masked):
            column = masked.split(".", 1)[1]
            words = (column, column.replace("_", " "), *SYNONYMS.get(column, ()))
            if any(re.search(rf"\b{re.escape(w)}\b", text) for w in words):
                raise Refusal(f"column {masked} is masked for you: I can't answer with it")
        for qualified in re.findall(r"\b[a-z_]+\.[a-z_]+\b", text):
            if qualified.split(".")[-1] not in self.policy.tables or not qualified.startswith("main."):
                raise Refusal(f"'{qualified}' is not a dataset you may read")

    def _entity_of(self, table: str) -> str | None:
        return next((e for e, tables in ENTITIES.items() if table in tables), None)

    def _subject(self, entities: list[str], plan: _Plan) -> str:
        for entity in entities:
            table = self._entity_table(entity)
            if table:
                return table
        fallback = self._entity_table("orders") or next(iter(self.policy.tables), None)
        if fallback is None:
            raise Refusal("you may not read any dataset of this project")
        return fallback

    def _aggregate(self, text: str, used: set[str]) -> tuple[str | None, str | None]:
        patterns = (
            ("avg", r"\b(?:average|avg|mean|typical)\s+(?:of\s+)?(?:the\s+)?(?:order\s+)?([a-z_ ]+?)"
                    r"(?:\s+(?:by|per|for|of|in|with|from|since|across)\b|$)"),
            ("sum", r"\b(?:total|sum of|sum|overall|combined)\s+(?:of\s+)?(?:the\s+)?(?:order\s+)?([a-z_ ]+?)"
                    r"(?:\s+(?:by|per|for|of|in|with|from|since|across)\b|$)"),
            ("max", r"\b(?:maximum|max|highest|largest|biggest)\s+(?:of\s+)?(?:the\s+)?(?:order\s+)?([a-z_ ]+?)"
                    r"(?:\s+(?:by|per|for|of|in|with|from|since|across)\b|$)"),
            ("min", r"\b(?:minimum|min|lowest|smallest)\s+(?:of\s+)?(?:the\s+)?(?:order\s+)?([a-z_ ]+?)"
                    r"(?:\s+(?:by|per|for|of|in|with|from|since|across)\b|$)"),
        )  # fmt: skip
        for aggregate, pattern in patterns:
            found = re.search(pattern, text)
            if found:
                phrase = found.group(1).strip()
                column = self._measure_column(phrase)
                if column is not None:
                    used.update(found.group(0).split())
                    return aggregate, column
                if aggregate in ("sum", "avg") or phrase.split()[0] not in _STOP | set(_ENTITY_WORDS):
                    raise Refusal(self._suggest(phrase.split()[-1]))
        # "top 5 customers by amount": the measure follows "by" after a top-N.
        by_measure = re.search(r"\b(?:top|bottom|best|worst)\s+\S+\s+(\S+)\s+by\s+(?:total\s+)?(?:order\s+)?"
                               r"([a-z_ ]+)", text)  # fmt: skip
        if by_measure:
            phrase = by_measure.group(2).strip()
            column = self._measure_column(phrase)
            if column is not None:
                used.update(by_measure.group(0).split())
                entity = _ENTITY_WORDS.get(by_measure.group(1))
                table = self._entity_table(entity) if entity else None
                if table is not None and column in self.policy.tables[table].columns:
                    return None, column  # "top 3 orders by amount": the rows themselves, ordered
                return "sum", column
            if phrase in ("orders", "order count", "number of orders", "order"):
                used.update(by_measure.group(0).split())
                return "count", None
            raise Refusal(self._suggest(phrase.split()[-1]))
        if re.search(r"\b(how many|number of|count|counts|how often)\b", text):
            return "count", None
        # A bare measure word with a grouping ("revenue per country"): its total.
        for word in re.findall(r"[a-z_]+", text):
            column = self._measure_column(word) if word in _MONEY_WORDS else None
            if column is not None and re.search(r"\b(by|per|each)\b", text):
                used.add(word)
                return "sum", column
        return None, None

    def _measure_column(self, phrase: str) -> str | None:
        numeric = [(t, c) for t, c in self._columns_for(phrase, list(self.policy.tables))
                   if self.policy.tables[t].columns[c].upper() in _NUMERIC]  # fmt: skip
        return numeric[0][1] if numeric else None

    def _measure_table(self, plan: _Plan, entities: list[str]) -> str:
        assert plan.measure is not None
        if plan.measure in self.policy.tables[plan.table].columns:
            return plan.table
        for table in self._ordered_tables():
            if plan.measure in self.policy.tables[table].columns:
                return table
        raise Refusal(self._suggest(plan.measure))

    def _ordered_tables(self) -> list[str]:
        rank = {"fct": 0, "dim": 1, "cus": 2, "stg": 3, "raw": 4}
        return sorted(self.policy.tables, key=lambda t: (rank.get(t[:3], 5), t))

    def _group_by_entity(self, entity: str, plan: _Plan, used: set[str]) -> None:
        table = self._entity_table(entity)
        if table is None:
            raise Refusal(f"you may not read a dataset of {entity}")
        label = next((c for c in ("full_name", "name", "event_type") if c in self.policy.tables[table].columns),
                     self.policy.tables[table].key)  # fmt: skip
        if label is None:
            raise Refusal(f"I don't know how to name each of the {entity}")
        self._join_to(table, plan)
        plan.group.append((table, label))

    def _group(self, phrase: str, plan: _Plan, used: set[str]) -> None:
        phrase = re.sub(r"^(the|each|every)\s+", "", phrase)
        if phrase in ("month", "months", "monthly"):
            column = self._date_column(plan.table)
            plan.group.append((plan.table, f"strftime({column}, '%Y-%m')"))  # rendered with the table's alias
            return
        if phrase in ("day", "days", "daily", "date"):
            plan.group.append((plan.table, self._date_column(plan.table)))
            return
        if phrase.rstrip("s") in ("customer", "client", "buyer") and self._entity_of(plan.table) != "customers":
            self._group_by_entity("customers", plan, used)
            return
        found = self._columns_for(phrase, [plan.table]) or self._columns_for(phrase.rstrip("s"), [plan.table])
        if not found:
            raise Refusal(self._suggest(phrase.split()[-1]))
        table, column = found[0]
        if table != plan.table:
            self._join_to(table, plan)
        plan.group.append((table, column))
        used.update(phrase.split())

    def _date_column(self, table: str) -> str:
        columns = self.policy.tables[table].columns
        dated = [c for c, t in columns.items() if t.upper() in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")]
        preferred = [c for c in dated if c in ("ordered_on", "occurred_at")] or dated
        if not preferred:
            raise Refusal(f"{table} has no date column to filter or group by")
        return preferred[0]

    def _join_to(self, table: str, plan: _Plan) -> None:
        if table == plan.table:
            return
        for rel in self.policy.relationships:
            if {rel.child, rel.parent} == {table, plan.table}:
                plan.joins.add(table)
                return
        raise Refusal(f"I know no relationship between {plan.table} and {table}")

    def _time_range(self, text: str, plan: _Plan, used: set[str]) -> str:
        def date_filter(op: str, value: date) -> None:
            plan.where.append(("", "", op, f"DATE '{value.isoformat()}'"))

        month = re.search(r"\b(?:in|during)\s+(" + "|".join(_MONTHS) + r")(?:\s+(\d{4}))?\b", text)
        if month:
            year = int(month.group(2) or 2026)
            start = date(year, _MONTHS[month.group(1)], 1)
            end = date(year + (start.month == 12), start.month % 12 + 1, 1)
            date_filter(">=", start)
            date_filter("<", end)
            return text.replace(month.group(0), " ")
        for op, pattern in ((">=", r"\b(?:since|after|from|on or after)\s+(\d{4}-\d{2}-\d{2})"),
                            ("<", r"\b(?:before|until)\s+(\d{4}-\d{2}-\d{2})")):  # fmt: skip
            found = re.search(pattern, text)
            if found:
                date_filter(op, date.fromisoformat(found.group(1)))
                text = text.replace(found.group(0), " ")
        between = re.search(r"\bbetween\s+(\d{4}-\d{2}-\d{2})\s+and\s+(\d{4}-\d{2}-\d{2})", text)
        if between:
            date_filter(">=", date.fromisoformat(between.group(1)))
            date_filter("<=", date.fromisoformat(between.group(2)))
            text = text.replace(between.group(0), " ")
        in_year = re.search(r"\bin\s+(\d{4})\b", text)
        if in_year:
            date_filter(">=", date(int(in_year.group(1)), 1, 1))
            date_filter("<", date(int(in_year.group(1)) + 1, 1, 1))
            text = text.replace(in_year.group(0), " ")
        return text

    def _value_filters(self, text: str, plan: _Plan, used: set[str]) -> str:
        """Known values (a status, a country code, an event type) become filters on their column."""
        for table_name in self._ordered_tables():
            table = self.policy.tables[table_name]
            for column, values in table.values.items():
                for value in values:
                    word = str(value).lower()
                    follower = re.search(rf"\b{re.escape(word)}[ _]([a-z]+)", text)
                    if follower and any(
                        f"{word}_{follower.group(1)}" in t.columns for t in self.policy.tables.values()
                    ):
                        continue  # "checkout count" names the column checkout_count, not the value checkout
                    if re.search(rf"\b{re.escape(word)}\b", text) and not any(column == w[1] for w in plan.where):
                        if column == "country_code" and not re.search(rf"\b(?:in|from|of)\s+{re.escape(word)}\b", text):
                            continue
                        plan.where.append((table_name, column, "=", "'" + str(value).replace("'", "''") + "'"))
                        text = re.sub(rf"\b(?:with status|status|in|from|are|is)?\s*{re.escape(word)}\b", " ",
                                      text)  # fmt: skip
        return text

    def _leftover_words(self, text: str, used: set[str], plan: _Plan) -> None:
        known = set(self._known_words()) | _STOP | used
        for word in re.findall(r"[a-z][a-z_]+", text):
            if word in known or word.rstrip("s") in known or word in _MONTHS or word in _NUMBER_WORDS:
                continue
            raise Refusal(self._suggest(word))

    def _row_columns(self, table: str) -> str:
        """``t.*``, or the table's unmasked columns when some are masked."""
        columns = self.policy.tables[table].columns
        if not any(f"{table}.{c}" in self.policy.masked for c in columns):
            return "t.*"
        return ", ".join(f"t.{c}" for c in columns if f"{table}.{c}" not in self.policy.masked)

    def _sql(self, plan: _Plan) -> str:
        base = plan.table
        conditions: list[str] = []
        for table, column, op, literal in plan.where:
            if not table:
                conditions.append(f"t.{self._date_column(base)} {op} {literal}")
                continue
            if column in self.policy.tables[base].columns:
                conditions.append(f"t.{column} {op} {literal}")
                continue
            self._join_to(table, plan)
            conditions.append(f"{{{table}}}.{column} {op} {literal}")
        alias = {base: "t", **{table: f"j{index}" for index, table in enumerate(sorted(plan.joins))}}
        joins = ""
        for table in sorted(plan.joins):
            rel = next(r for r in self.policy.relationships if {r.child, r.parent} == {table, base})
            joins += f" JOIN {table} AS {alias[table]} ON {rel.on(table, alias[table])}"
        for table, short in alias.items():
            conditions = [c.replace(f"{{{table}}}.", f"{short}.") for c in conditions]
        where_sql = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        direction = "DESC" if plan.order_desc else "ASC"
        if plan.aggregate is None and not plan.group:
            if plan.limit:
                order = plan.measure or self._date_column(base)
                return (
                    f"SELECT {self._row_columns(base)} FROM {base} AS t{joins}{where_sql} ORDER BY t.{order} "
                    f"{direction} LIMIT {plan.limit}"
                )
            return f"SELECT {self._row_columns(base)} FROM {base} AS t{joins}{where_sql}"
        counting = plan.aggregate in (None, "count")
        value = "COUNT(*)" if counting else f"{str(plan.aggregate).upper()}(t.{plan.measure})"
        name = "count" if counting else f"{plan.aggregate}_{plan.measure}"
        if not plan.group:
            return f"SELECT {value} AS {name} FROM {base} AS t{joins}{where_sql}"
        keys = [
            f"strftime({alias[table]}.{column.split('(', 1)[1].split(',', 1)[0]}, '%Y-%m') AS month"
            if column.startswith("strftime(")
            else f"{alias[table]}.{column}"
            for table, column in plan.group
        ]
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        order = f"{name} {direction}" if plan.limit else positions
        limit = f" LIMIT {plan.limit}" if plan.limit else ""
        return (
            f"SELECT {', '.join(keys)}, {value} AS {name} FROM {base} AS t{joins}{where_sql} "
            f"GROUP BY {positions} ORDER BY {order}{limit}"
        )


_MONEY_WORDS = {"revenue", "sales", "spend", "amount", "amounts", "money"}
_NUMERIC = {"INTEGER", "BIGINT", "HUGEINT", "DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC", "SMALLINT", "INT"}


def numeric_type(type_name: str) -> str:
    """The type family name used for measure detection (DECIMAL(18,2) -> DECIMAL)."""
    return type_name.split("(", 1)[0].strip().upper()


# The policy seam and the catalog ---------------------------------------------------------------------


def infer_relationships(tables: dict[str, Table]) -> list[Relationship]:
    """Joins along keys: a table with column ``x_id`` references the table whose key is ``x_id``."""
    found: list[Relationship] = []
    for parent in tables.values():
        if parent.key is None:
            continue
        for child in tables.values():
            if child.name != parent.name and parent.key in child.columns:
                found.append(Relationship(child.name, parent.name, parent.key))
    return found


def _short(name: str) -> str:
    return name.split(".")[-1].lower()


def _copied_key(down: str, up: str, sources: int) -> bool:
    """Whether a column built from one upstream column carries its values (a key passed through or renamed)."""
    return sources == 1 and (down == up or down.endswith("_id"))


MAX_LINEAGE_RELATIONSHIPS = 2_000


def catalog_relationships(datasets: list[dict[str, Any]], edges: list[dict[str, Any]]) -> list[Relationship]:
    """Relationships the catalog vouches for: each dbt ``relationships`` test of a dataset (its metadata, as the
    dbt engine reports it), then the same relationship carried along column lineage to the datasets built from
    its two sides (``fct_orders.customer_id`` copies ``stg_orders.customer_id``, which references
    ``stg_customers.customer_id``, copied by ``dim_customers.customer_id``: fct_orders joins dim_customers)."""
    tested: list[tuple[str, str, str, str]] = []
    for dataset in datasets:
        for rel in (dataset.get("metadata") or {}).get("relationships") or []:
            if isinstance(rel, dict) and rel.get("column") and rel.get("to") and rel.get("field"):
                tested.append((_short(str(dataset["name"])), str(rel["column"]).lower(), _short(str(rel["to"])),
                               str(rel["field"]).lower()))  # fmt: skip
    copies: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for edge in edges:
        pairs = [p for p in edge.get("column_lineage") or [] if isinstance(p, dict)]
        sources: dict[str, int] = {}
        for pair in pairs:
            sources[str(pair.get("downstream_column", "")).lower()] = sources.get(
                str(pair.get("downstream_column", "")).lower(), 0) + 1  # fmt: skip
        for pair in pairs:
            up, down = str(pair.get("upstream_column", "")).lower(), str(pair.get("downstream_column", "")).lower()
            if up and down and _copied_key(down, up, sources[down]):
                copies.setdefault((_short(edge["upstream"]), up), []).append((_short(edge["downstream"]), down))
    found: dict[tuple[str, str, str, str], str] = dict.fromkeys(tested, "dbt")
    frontier = list(tested)
    while frontier and len(found) < MAX_LINEAGE_RELATIONSHIPS:
        child, column, parent, field_ = frontier.pop()
        for down, down_column in [(child, column), *copies.get((child, column), [])]:
            for up, up_column in [(parent, field_), *copies.get((parent, field_), [])]:
                carried = (down, down_column, up, up_column)
                if down != up and carried not in found:
                    found[carried] = "lineage"
                    frontier.append(carried)
    return [Relationship(c, p, col, pcol, source) for (c, col, p, pcol), source in found.items()]


async def access_policy(conn: AsyncConnection, *, project_id: uuid.UUID) -> AccessPolicy:
    """The datasets the connection's user may read in the project: the catalog's tables under RLS (issue 22's
    policies replace this: refused tables drop out, masked columns go into ``masked``), joined along the
    catalog's relationships (dbt tests and column lineage) first, shared key columns after."""
    rows = await dict_rows(
        conn,
        "select d.namespace, d.name, d.description, d.columns, d.metadata from ops.datasets d "
        "where d.project_id = %s and d.namespace like 'duckdb://%%' order by d.updated_at desc limit 200",
        (project_id,),
    )
    edges = await dict_rows(
        conn,
        "select u.name as upstream, w.name as downstream, e.column_lineage from ops.lineage_edges e "
        "join ops.datasets u on u.id = e.upstream_id join ops.datasets w on w.id = e.downstream_id "
        "where e.project_id = %s and u.namespace like 'duckdb://%%' and w.namespace like 'duckdb://%%' "
        "and jsonb_array_length(e.column_lineage) > 0 order by e.updated_at desc limit 1000",
        (project_id,),
    )
    tables: dict[str, Table] = {}
    # One task reads one DuckDB file: the warehouse holding most of the catalog's tables (the most recently
    # written on a tie); tables of another warehouse are not in it.
    counts: dict[str, int] = {}
    for row in rows:
        if row["columns"]:
            counts[str(row["namespace"])] = counts.get(str(row["namespace"]), 0) + 1
    namespace = max(counts, key=lambda ns: counts[ns], default=None)  # dicts keep the newest-first order
    database = namespace.removeprefix("duckdb://") if namespace else None
    for row in rows:
        name = str(row["name"]).split(".")[-1].lower()
        if name in tables or not row["columns"] or str(row["namespace"]) != namespace:
            continue
        columns = {str(c.get("name", "")).lower(): numeric_type(str(c.get("type") or "VARCHAR"))
                   for c in row["columns"] if c.get("name")}  # fmt: skip
        descriptions = {str(c.get("name", "")).lower(): str(c.get("description") or "") for c in row["columns"]}
        key = next(iter(columns), None)
        tables[name] = Table(name, columns, descriptions, str(row["description"] or ""),
                             key if key and key.endswith("_id") else None)  # fmt: skip
    known = [r for r in catalog_relationships(rows, edges) if r.child in tables and r.parent in tables]
    known = [r for r in known if r.column in tables[r.child].columns and r.parent_column in tables[r.parent].columns]
    pairs = {frozenset((r.child, r.parent)) for r in known}
    keyed = [r for r in infer_relationships(tables) if frozenset((r.child, r.parent)) not in pairs]
    return AccessPolicy(tables, known + keyed, set(), database)


# Providers ------------------------------------------------------------------------------------------


def llm_configured() -> bool:
    """Whether an OpenAI-compatible endpoint is configured (LAKEHOUSE_NL2SQL_URL and _MODEL)."""
    return bool(os.environ.get("LAKEHOUSE_NL2SQL_URL") and os.environ.get("LAKEHOUSE_NL2SQL_MODEL"))


def schema_context(policy: AccessPolicy) -> str:
    """The readable tables as the LLM's context: columns, types, descriptions, sample values, relationships."""
    lines = []
    for table in policy.tables.values():
        columns = ", ".join(
            f"{name} {kind}" + (f" -- {table.descriptions[name]}" if table.descriptions.get(name) else "")
            + (f" (values: {', '.join(table.values[name][:8])})" if table.values.get(name) else "")
            for name, kind in table.columns.items() if f"{table.name}.{name}" not in policy.masked
        )  # fmt: skip
        lines.append(f"TABLE {table.name} ({columns})" + (f" -- {table.description}" if table.description else ""))
    lines += [f"RELATIONSHIP {r.child}.{r.column} -> {r.parent}.{r.parent_column}" for r in policy.relationships]
    return "\n".join(lines)


def translate_with_llm(question: str, policy: AccessPolicy, *, client: httpx.Client | None = None) -> Translation:
    """Ask the configured OpenAI-compatible endpoint for one DuckDB SELECT; the guardrails still apply."""
    url = os.environ["LAKEHOUSE_NL2SQL_URL"].rstrip("/")
    model = os.environ["LAKEHOUSE_NL2SQL_MODEL"]
    headers = {"Authorization": f"Bearer {os.environ['LAKEHOUSE_NL2SQL_API_KEY']}"} if os.environ.get(
        "LAKEHOUSE_NL2SQL_API_KEY") else {}  # fmt: skip
    body: dict[str, Any] = {
        "model": model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You write one DuckDB SELECT statement answering the question, using only "
             "these tables. Answer with the SQL only, or with REFUSE: <reason> when the tables cannot answer it or "
             "the question asks to change data.\n" + schema_context(policy)},
            {"role": "user", "content": question},
        ],
    }  # fmt: skip
    http = client or httpx.Client(timeout=60)
    try:
        reply = http.post(f"{url}/chat/completions", json=body, headers=headers)
        reply.raise_for_status()
        content = str(reply.json()["choices"][0]["message"]["content"]).strip()
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        return Translation(None, f"the NL→SQL endpoint failed: {exc}", provider=model)
    finally:
        if client is None:
            http.close()
    content = re.sub(r"^```(?:sql)?\s*|\s*```$", "", content).strip()
    if content.upper().startswith("REFUSE"):
        return Translation(None, content.split(":", 1)[-1].strip(), provider=model)
    try:
        return Translation(guard(content, policy), "Review the SQL, edit it if needed, then run it.", provider=model)
    except Invalid as exc:
        return Translation(None, exc.message, provider=model)


def translate(question: str, policy: AccessPolicy) -> Translation:
    """The configured provider's translation (the LLM when configured, else the built-in translator)."""
    if llm_configured():
        return translate_with_llm(question, policy)
    return Translator(policy).translate(question)


# Storage: the evaluation set --------------------------------------------------------------------------


async def record_question(
    conn: AsyncConnection, *, project_id: uuid.UUID, question: str, translation: Translation
) -> uuid.UUID:
    """Store the question and what the translator answered."""
    return await returned_id(
        conn,
        "select ops.record_nl2sql_question(%s, %s, %s, %s, %s, %s)",
        (project_id, question, translation.provider, "refused" if translation.refused else "translated",
         translation.sql, translation.message),
    )  # fmt: skip


def ask_task_spec(sql: str, policy: AccessPolicy, *, max_scan_bytes: int | None = None) -> dict[str, Any]:
    """The run spec of a reviewed question: one DuckDB SQL task on the tables' database, result kept as Parquet.

    The agent EXPLAINs the statement on the engine before running it and refuses it when the estimated scan
    exceeds the lower of ``max_scan_bytes`` (Ask's own cap) and the scanned_bytes_per_query cap the claim
    carries (executor_agent/engines/sql_support/task.py): the run fails saying both figures.
    """
    task: dict[str, Any] = {"key": "ask", "engine": "duckdb", "timeout_s": 300, "sql": sql,
                            "output": {"formats": ["parquet"], "preview_rows": 200}}  # fmt: skip
    if max_scan_bytes is not None:
        task["max_scan_bytes"] = max_scan_bytes
    if policy.database:
        task["database"] = policy.database
    return {"name": "ask: " + sql.splitlines()[0][:80], "tasks": [task]}


async def run_question(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    question_id: uuid.UUID,
    sql: str,
    policy: AccessPolicy,
    environment: str = "dev",
) -> uuid.UUID:
    """Guard the reviewed (possibly edited) SQL again and submit it as a DuckDB SQL task; the question keeps it."""
    checked = guard(sql, policy)
    found = await scalar(conn, "select project_id from ops.nl2sql_questions where id = %s", (question_id,))
    if found != project_id:
        raise Invalid(f"question {question_id} does not exist in this project", field="question")
    cur = await conn.execute(
        # Requested by the asker: the agent applies their access policies, and result policies show them the rows.
        "select run_id, refusal from ops.submit_run(%s, %s, %s::jsonb, '{}'::jsonb, 'api', auth.uid(), 'ask', null)",
        (
            found,
            environment,
            json.dumps(ask_task_spec(checked, policy, max_scan_bytes=get_settings().nl2sql_max_scan_bytes)),
        ),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        raise Invalid(f"the run was refused: {row[1] if row else 'unknown reason'}", field="sql")
    await conn.execute("select ops.set_nl2sql_run(%s, %s, %s)", (question_id, checked, row[0]))
    return uuid.UUID(str(row[0]))


async def give_feedback(conn: AsyncConnection, *, question_id: uuid.UUID, correct: bool, fixed_sql: str | None) -> None:
    """Mark a question's SQL correct, or wrong with the fixed SQL (the evaluation set's gold answer)."""
    await conn.execute(
        "select ops.nl2sql_feedback(%s, %s, %s)", (question_id, "correct" if correct else "wrong", fixed_sql)
    )


async def question_outcome(conn: AsyncConnection, *, question_id: uuid.UUID) -> dict[str, Any]:
    """A question's run: its status and error, and the Parquet result of its last statement once finished."""
    row = await found_row(
        conn,
        "select q.id, q.question, q.final_sql, q.run_id, r.status, r.error from ops.nl2sql_questions q "
        "left join ops.runs r on r.id = q.run_id where q.id = %s",
        (question_id,),
        Invalid(f"question {question_id} does not exist or is not visible to you", field="question"),
    )
    artifact = await first_dict_row(
        conn,
        "select a.id from ops.query_history h join ops.artifacts a on a.task_id = h.task_id "
        "and a.attempt = h.attempt and a.name = h.result_artifact where h.run_id = %s and h.state = 'finished' "
        "order by h.statement_index desc limit 1",
        (row["run_id"],),
    )
    row["result_artifact_id"] = artifact["id"] if artifact else None
    return row


async def list_questions(conn: AsyncConnection, *, project_id: uuid.UUID, limit: int = 100) -> list[Nl2sqlQuestion]:
    """The project's latest questions with their SQL, outcome and feedback (the evaluation set)."""
    from control_room.db.tables import Nl2sqlQuestion

    async with conn.cursor(row_factory=model_rows(Nl2sqlQuestion)) as cur:
        await cur.execute(
            "select * from ops.nl2sql_questions where project_id = %s order by created_at desc, id desc limit %s",
            (project_id, limit),
        )
        return list(await cur.fetchall())


def auto_chart(columns: list[str], types: list[str]) -> tuple[str, str | None, list[str]]:
    """(chart type, x, y) for a result: a label or date column on x, its numeric columns as bars (a line over
    dates); a table when there is nothing to plot."""
    numeric = [c for c, t in zip(columns, types, strict=True) if numeric_type(t) in _NUMERIC or t.startswith(
        ("int", "double", "float", "decimal", "uint"))]  # fmt: skip
    labels = [c for c in columns if c not in numeric]
    if not numeric or not labels:
        return "table", None, []
    x = labels[0]
    kind = "line" if any(word in types[columns.index(x)].lower() for word in ("date", "timestamp")) else "bar"
    return kind, x, numeric[:3]
