"""The access guard of one SQL task: checks and rewrites each statement against the task's policies.

The control plane answers ``POST /tasks/{id}/policies`` with the task's principal, its groups and every
dataset the policies restrict for it (a refused read or write, row filters, column masks); datasets not
listed are open to the task. The guard fails closed:

* A statement sqlglot cannot parse, or of a kind it does not know to be harmless (``EXPLAIN``, ``PRAGMA``,
  ``ATTACH``, ``INSTALL``/``LOAD``, ``CALL``, ``SHOW``, ``EXPORT``...), is refused.
* A table reference matches a dataset by table name and, when both say one, schema, case-insensitively and
  in any catalog (``customers``, ``main."Customers"``, ``memory.main.customers``), whatever alias or CTE
  surrounds it: a CTE named like a restricted dataset is treated as the dataset.
* Table functions and file paths that read storage around the catalog (``read_parquet``, ``'x.parquet'``,
  ``query``, ``glob``...) and the metadata catalogs (``information_schema``, ``duckdb_*()``, Trino's
  ``system``) are refused: they would read or list datasets hidden from the principal.
* A view the engine knows is checked through its definition; one reading a restricted dataset is refused.
* A read of a filtered or masked dataset is rewritten: the table becomes a subquery under the same alias
  selecting the masked columns from the rows the filters keep, so aliases, ``SELECT *``, joins, unions,
  subqueries and correlated references all see the policy's view. Writes to such a dataset are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

Dialect = Literal["duckdb", "trino"]
ViewLookup = Callable[[tuple[str, ...]], str | None]

# Statements whose effect the guard understands; any other kind is refused.
_READS = (exp.Select, exp.SetOperation, exp.Describe, exp.Copy, exp.Pivot)
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)
_HARMLESS = (exp.Use, exp.Set, exp.Transaction, exp.Commit, exp.Rollback)
# Table functions that only compute values; every other one may read storage or metadata.
_SAFE_TABLE_FUNCTIONS = frozenset(
    {"range", "generate_series", "generateseries", "explodinggenerateseries", "unnest", "sequence"}
)
_STORAGE_FUNCTION = re.compile(
    r"^(read_.*|.*_scan|duckdb_.*|pragma_.*|iceberg_.*|parquet_.*|glob|query|query_table|sniff_csv|getenv|"
    r"sql_auto_complete|which_secret|current_setting)$"
)
_METADATA_SCHEMAS = frozenset({"information_schema", "pg_catalog", "system", "sys"})
_FILE_LIKE = re.compile(r"[/\\]|\.(parquet|csv|tsv|json|jsonl|ndjson|txt|gz|zst|arrow|xlsx|db|duckdb|delta)$", re.I)
_PRINCIPAL_GROUPS = "current_principal_groups"
_PRINCIPAL = "current_principal"
_VIEW_DEPTH = 8
_PLACEHOLDER = "__lakehouse_policy_dataset__"


class PolicyRefused(Exception):
    """A statement the task's policies do not allow; the message names the dataset and what is missing.
    A refusal for a missing privilege also carries the dataset, the privilege and the decision's reason
    (the control plane records it in the access audit)."""

    def __init__(self, message: str, *, dataset: str | None = None, privilege: str | None = None,
                 reason: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.dataset = dataset
        self.privilege = privilege
        self.reason = reason

    def audit(self) -> dict[str, str] | None:
        """The refusal as the ``access`` data of a ``sql.statement.refused`` event (None: no privilege missing)."""
        if self.dataset is None or self.privilege is None:
            return None
        return {"dataset": self.dataset, "privilege": self.privilege, "reason": self.reason[:1000]}


@dataclass(frozen=True)
class DatasetRule:
    """What the task may do with one dataset, as the control plane decided."""

    name: str
    parts: tuple[str, ...]
    read: bool
    write: bool
    reasons: Mapping[str, str]
    columns: tuple[str, ...]
    row_filter: exp.Expr | None
    masks: Mapping[str, exp.Expr]  # lower-case column -> replacement expression
    mask_policies: tuple[str, ...] = ()
    template: exp.Select | None = field(default=None, compare=False)

    @property
    def rewrites(self) -> bool:
        return self.row_filter is not None or bool(self.masks)

    def matches(self, parts: tuple[str, ...]) -> bool:
        """Whether a reference (catalog?, schema?, table) may name this dataset: same table name, and the same
        schema when both say one. The catalog is not compared: one engine may attach a database under any
        name, so a reference in another catalog is held to the dataset's policies too (fail closed)."""
        if parts[-1] != self.parts[-1]:
            return False
        return len(parts) < 2 or len(self.parts) < 2 or parts[-2] == self.parts[-2]


class AccessGuard:
    """Checks and rewrites statements for one principal; built once per task from the policies payload."""

    def __init__(self, payload: Mapping[str, Any], *, dialect: Dialect, views: ViewLookup | None = None) -> None:
        principal = payload.get("principal") or {}
        self.principal = str(principal.get("name") or "this task's principal")
        self.groups = [str(g) for g in payload.get("groups") or []]
        # A policy preview (a run acting as someone else for an editor of policies) may only read: a write
        # as the previewed principal would act with their privileges, not the requester's.
        self.read_only = bool(payload.get("read_only"))
        self.dialect: Dialect = dialect
        self.views = views
        self.rules = [self._rule(d) for d in payload.get("datasets") or []]
        self._rendered: dict[str, str] = {}

    @property
    def active(self) -> bool:
        """False when no dataset is restricted and writes are allowed: then there is nothing to enforce."""
        return bool(self.rules) or self.read_only

    # Building rules ------------------------------------------------------------------------------------

    def _principal_values(self, node: exp.Expr) -> exp.Expr:
        """current_principal() and current_principal_groups() as literals of this task's principal."""
        if isinstance(node, exp.Anonymous | exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name == _PRINCIPAL_GROUPS:
                array = exp.Array(expressions=[exp.Literal.string(g) for g in self.groups])
                return exp.cast(array, exp.DataType.build("array<varchar>"))
            if name == _PRINCIPAL:
                return exp.Literal.string(self.principal)
        return node

    def _policy_sql(self, sql: str) -> exp.Expr:
        return sqlglot.parse_one(sql, read=self.dialect).transform(self._principal_values)

    def _mask(self, column: str, kind: str, expression: str | None) -> exp.Expr:
        text = exp.cast(exp.column(column, quoted=True), exp.DataType.build("varchar"))
        if kind == "null":
            return exp.Null()
        if kind == "hash":
            if self.dialect == "trino":
                digest = exp.func("sha256", exp.func("to_utf8", text))
                return exp.func("lower", exp.func("to_hex", digest))
            return exp.func("sha256", text)
        if kind == "redact":
            return exp.Literal.string("****")
        if kind == "partial":
            head = exp.Substring(this=text, start=exp.Literal.number(1), length=exp.Literal.number(2))
            return exp.DPipe(this=head, expression=exp.Literal.string("****"), safe=True)
        return self._policy_sql(expression or "NULL")

    def _rule(self, decision: Mapping[str, Any]) -> DatasetRule:
        name = str(decision["name"])
        filters = [self._policy_sql(str(f["predicate"])) for f in decision.get("row_filters") or []]
        row_filter = exp.and_(*[exp.paren(f) for f in filters]) if filters else None
        masks = {
            str(m["column"]).lower(): self._mask(str(m["column"]), str(m["kind"]), m.get("expression"))
            for m in decision.get("masks") or []
        }
        rule = DatasetRule(
            name=name,
            parts=tuple(p.lower() for p in name.split(".")),
            read=bool(decision.get("read")),
            write=bool(decision.get("write")),
            reasons=dict(decision.get("reasons") or {}),
            columns=tuple(str(c) for c in decision.get("columns") or []),
            row_filter=row_filter,
            masks=masks,
            mask_policies=tuple(str(m["policy"]) for m in decision.get("masks") or []),
        )
        return DatasetRule(**{**rule.__dict__, "template": self._template(rule)}) if rule.rewrites else rule

    def _template(self, rule: DatasetRule) -> exp.Select:
        """SELECT <masked columns> FROM __dataset__ WHERE <filters>: copied for each reference."""
        projection: list[exp.Expr]
        if not rule.masks:
            projection = [exp.Star()]
        elif self.dialect == "duckdb":
            replaced = [exp.alias_(m, c, quoted=True) for c, m in rule.masks.items()]
            projection = [exp.Star(replace=replaced)]
        else:
            known = {c.lower() for c in rule.columns}
            missing = [c for c in rule.masks if c not in known]
            if not rule.columns or missing:
                projection = []  # refused on use: the columns around the masked ones are unknown
            else:
                projection = [
                    exp.alias_(rule.masks[c.lower()], c, quoted=True)
                    if c.lower() in rule.masks
                    else exp.column(c, quoted=True)
                    for c in rule.columns
                ]
        select = exp.select(*projection).from_(exp.to_table(_PLACEHOLDER))
        return select.where(rule.row_filter.copy()) if rule.row_filter is not None else select

    # Checking statements --------------------------------------------------------------------------------

    def check(self, sql: str, *, index: int = 1) -> str:
        """The statement to run (rewritten when a filter or mask applies), or PolicyRefused."""
        if not self.active:
            return sql
        try:
            parsed = sqlglot.parse(sql, read=self.dialect)
        except SqlglotError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PolicyRefused(
                f"statement {index} cannot be parsed, so it cannot be checked against access policies: {first}"
            ) from exc
        statements = [s for s in parsed if s is not None]
        if len(statements) != 1:
            raise PolicyRefused(f"statement {index}: give one statement at a time under access policies")
        tree = statements[0]
        if self.read_only and not (isinstance(tree, exp.Select | exp.SetOperation) and tree.args.get("into") is None):
            raise PolicyRefused(
                f"statement {index}: a policy preview runs as {self.principal} and may only read: "
                "give one SELECT query"
            )
        if isinstance(tree, _HARMLESS):
            return sql
        if not isinstance(tree, _READS + _WRITES):
            kind = tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
            raise PolicyRefused(
                f"statement {index}: {kind} statements are not allowed under access policies "
                "(they cannot be checked against the datasets they touch)"
            )
        self._refuse_storage_functions(tree, index)
        targets = self._write_targets(tree)
        for target, verb in targets:
            self._check_write(target, verb, index)
        rewrites: list[tuple[exp.Table, DatasetRule]] = []
        for table in list(tree.find_all(exp.Table)):
            if any(table is t for t, _ in targets) or _is_cte_reference(table):
                continue
            rule = self._check_read(table, index)
            if rule is not None and rule.rewrites and not isinstance(tree, exp.Describe):
                rewrites.append((table, rule))
        if not rewrites:
            return sql
        spliced = self._splice(sql, rewrites, index)
        if spliced is not None:
            return spliced
        for table, rule in rewrites:
            self._rewrite(table, rule, index)
        return tree.sql(dialect=self.dialect)

    def _splice(self, sql: str, rewrites: list[tuple[exp.Table, DatasetRule]], index: int) -> str | None:
        """The statement with each rewritten table's text replaced by its policy subquery, keeping the rest of
        the author's text as written (cheaper and more faithful than generating SQL from the whole tree);
        None when the parser did not record where a table is."""
        edits: list[tuple[int, int, str]] = []
        for table, rule in rewrites:
            spans = [part.meta for part in table.parts]
            if not spans or any("start" not in m or "end" not in m for m in spans):
                return None
            start, end = min(m["start"] for m in spans), max(m["end"] for m in spans) + 1
            inner = self._subquery_sql(rule, index).replace(_PLACEHOLDER, sql[start:end])
            if table.alias or isinstance(table.parent, exp.Copy):
                edits.append((start, end, f"({inner})"))
            else:
                edits.append(
                    (start, end, f"({inner}) AS {exp.to_identifier(table.name, quoted=True).sql(self.dialect)}")
                )
        for start, end, text in sorted(edits, reverse=True):
            sql = sql[:start] + text + sql[end:]
        return sql

    def _subquery_sql(self, rule: DatasetRule, index: int) -> str:
        template = rule.template
        if template is None or not template.expressions:
            raise PolicyRefused(
                f"statement {index}: dataset {rule.name} has masked columns but the catalog does not list its "
                "columns, so they cannot be masked: refresh its schema in the catalog"
            )
        cached = self._rendered.get(rule.name)
        if cached is None:
            cached = self._rendered[rule.name] = template.sql(dialect=self.dialect)
        return cached

    def _refuse_storage_functions(self, tree: exp.Expr, index: int) -> None:
        for func in tree.find_all(exp.Func):
            name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
            if _STORAGE_FUNCTION.match(name):
                raise PolicyRefused(
                    f"statement {index}: function {name} is not allowed under access policies "
                    "(it reads storage or metadata around the catalog); read datasets by their table names"
                )

    def _write_targets(self, tree: exp.Expr) -> list[tuple[exp.Table, str]]:
        if isinstance(tree, exp.Copy):
            return [(t, "load into") for t in [tree.this] if isinstance(t, exp.Table) and tree.args.get("kind")]
        if isinstance(tree, exp.TruncateTable):
            return [(t, "truncate") for t in tree.expressions if isinstance(t, exp.Table)]
        if isinstance(tree, exp.Drop):
            dropped = [tree.this, *(tree.args.get("tables") or [])]
            return [(t, "drop") for t in dropped if isinstance(t, exp.Table)]
        if not isinstance(tree, _WRITES):
            return []
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        verb = {exp.Update: "update", exp.Delete: "delete from", exp.Merge: "merge into"}.get(type(tree), "write")
        return [(target, verb)] if isinstance(target, exp.Table) else []

    def _parts(self, table: exp.Table) -> tuple[str, ...]:
        return tuple(p.lower() for p in (table.catalog, table.db, table.name) if p)

    def _matching(self, table: exp.Table, index: int) -> DatasetRule | None:
        parts = self._parts(table)
        found = [r for r in self.rules if r.matches(parts)]
        if len(found) > 1 and len({(r.read, r.write, r.row_filter, tuple(r.masks)) for r in found}) > 1:
            names = ", ".join(r.name for r in found)
            raise PolicyRefused(
                f"statement {index}: table {'.'.join(parts)} could be any of {names}, restricted differently: "
                "qualify it (schema.table)"
            )
        return found[0] if found else None

    def _refusal(self, rule: DatasetRule, privilege: str, verb: str, index: int) -> PolicyRefused:
        reason = rule.reasons.get(privilege, "")
        return PolicyRefused(
            f"statement {index}: access denied: {self.principal} may not {verb} dataset {rule.name} "
            f"(missing privilege {privilege}{': ' + reason if reason else ''})",
            dataset=rule.name, privilege=privilege, reason=reason,
        )

    def _check_write(self, table: exp.Table, verb: str, index: int) -> None:
        self._refuse_unsafe_source(table, index)
        rule = self._matching(table, index)
        if rule is None:
            return
        if not rule.write:
            raise self._refusal(rule, "write", verb, index)
        if rule.rewrites and verb in ("update", "delete from", "merge into"):
            raise PolicyRefused(
                f"statement {index}: access denied: {self.principal} may not {verb} dataset {rule.name}: "
                "its rows are filtered or its columns masked for you, so changes would touch data you cannot see"
            )

    def _refuse_unsafe_source(self, table: exp.Table, index: int) -> None:
        if not isinstance(table.this, exp.Identifier):
            name = table.this.name if isinstance(table.this, exp.Anonymous) else table.this.key
            if str(name).lower() not in _SAFE_TABLE_FUNCTIONS:
                raise PolicyRefused(
                    f"statement {index}: table function {name} is not allowed under access policies "
                    "(it reads storage around the catalog); read datasets by their table names"
                )
            return
        parts = self._parts(table)
        if any(p in _METADATA_SCHEMAS for p in parts[:-1]) or parts[-1].startswith(("duckdb_", "sqlite_", "pg_")):
            raise PolicyRefused(
                f"statement {index}: the metadata catalog {'.'.join(parts)} is not readable under access policies "
                "(it lists datasets hidden from you); the catalog page shows what you may read"
            )
        if _FILE_LIKE.search(table.name):
            raise PolicyRefused(
                f"statement {index}: reading the file {table.name} directly is not allowed under access policies; "
                "read datasets by their table names"
            )

    def _check_read(self, table: exp.Table, index: int, depth: int = 0) -> DatasetRule | None:
        self._refuse_unsafe_source(table, index)
        if not isinstance(table.this, exp.Identifier):
            return None
        rule = self._matching(table, index)
        if rule is not None:
            if not rule.read:
                raise self._refusal(rule, "read", "read", index)
            return rule
        if self.views is not None and depth < _VIEW_DEPTH:
            self._check_view(table, index, depth)
        return None

    def _check_view(self, table: exp.Table, index: int, depth: int) -> None:
        definition = self.views(self._parts(table)) if self.views else None
        if not definition:
            return
        try:
            view = sqlglot.parse_one(definition, read=self.dialect)
        except SqlglotError as exc:
            raise PolicyRefused(f"statement {index}: view {table.name} cannot be checked (unparseable)") from exc
        for inner in view.find_all(exp.Table):
            if isinstance(view, exp.Create) and inner is view.this:
                continue
            rule = self._check_read(inner, index, depth + 1)
            if rule is not None:
                raise PolicyRefused(
                    f"statement {index}: view {table.name} reads dataset {rule.name}, which is restricted for "
                    f"{self.principal}: query {rule.name} directly so its row filters and masks apply"
                )

    def _rewrite(self, table: exp.Table, rule: DatasetRule, index: int) -> None:
        self._subquery_sql(rule, index)  # refuses a rule that cannot be applied
        assert rule.template is not None
        inner = rule.template.copy()
        source = table.copy()
        source.set("alias", None)
        placeholder = inner.find(exp.Table)
        assert placeholder is not None
        placeholder.replace(source)
        if isinstance(table.parent, exp.Copy):
            table.replace(exp.Subquery(this=inner))
            return
        alias = exp.TableAlias(this=exp.to_identifier(table.alias or table.name, quoted=True))
        table.replace(exp.Subquery(this=inner, alias=alias))


def _is_cte_reference(table: exp.Table) -> bool:
    """Whether an unqualified table names a CTE in scope (its body is checked where it is defined). A CTE
    counts only for the main query and for CTEs defined after it in the same WITH (or itself, when
    recursive): a name the engine might resolve to the real table is always treated as the table."""
    if table.args.get("db") or table.args.get("catalog") or not isinstance(table.this, exp.Identifier):
        return False
    name = table.name.lower()
    within: exp.CTE | None = None  # the innermost CTE body holding the table, while walking up
    node = table.parent
    while node is not None:
        if isinstance(node, exp.CTE):
            within = node
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            ctes = [c for c in with_.expressions if isinstance(c, exp.CTE)]
            inside = next((i for i, c in enumerate(ctes) if c is within), None)
            visible = ctes if inside is None else ctes[: inside + (1 if with_.args.get("recursive") else 0)]
            if any(c.alias_or_name.lower() == name for c in visible):
                return True
        node = node.parent
    return False
