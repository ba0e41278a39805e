"""Overhead of access-policy enforcement per SQL statement: parse, resolve every table, check, rewrite.

Statements join 1, 5, 10 and 20 tables, every one a restricted dataset with a row filter (naming the
principal's groups) and a masked column, so every reference is rewritten; plus a 20-table statement over
open datasets (checked, not rewritten). Prints p50 and p95 in milliseconds per statement and dialect.
Target: p95 < 5 ms at 20 tables. No assertions: figures only.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

import sqlglot

from executor_agent.policy import AccessGuard

RESTRICTED = 40
RUNS = 300


def payload() -> dict[str, Any]:
    datasets: list[dict[str, Any]] = [
        {
            "name": f"warehouse.main.t{i}",
            "columns": ["id", "k", "email", "region"],
            "read": True,
            "write": False,
            "reasons": {},
            "row_filters": [
                {"policy": f"f{i}", "predicate": "region = 'EU' or contains(current_principal_groups(), 'x')"}
            ],
            "masks": [{"policy": f"m{i}", "column": "email", "kind": "hash", "expression": None}],
        }
        for i in range(RESTRICTED)
    ]
    return {"principal": {"kind": "user", "name": "ann@x"}, "groups": ["analysts", "bi"], "datasets": datasets}


def statement(tables: int, prefix: str = "t") -> str:
    joins = " ".join(f"join {prefix}{i} a{i} on a{i}.k = a0.id" for i in range(1, tables))
    columns = ", ".join(f"a{i}.email" for i in range(tables))
    return f"select {columns} from {prefix}0 a0 {joins} where a0.region = 'EU' order by a0.id limit 100"


def measure(check: Callable[[str], object], sql: str) -> tuple[float, float, float]:
    """p50 and p95 of the wall time, and p95 of the thread's CPU time (ms): on a loaded machine the wall
    time's tail is mostly time spent waiting for a core, which the CPU time leaves out."""
    for _ in range(20):
        check(sql)  # warm up
    wall, cpu = [], []
    for _ in range(RUNS):
        started, started_cpu = time.perf_counter(), time.thread_time()
        check(sql)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    wall.sort()
    cpu.sort()
    p95 = int(len(wall) * 0.95) - 1
    return statistics.median(wall), wall[p95], cpu[p95]


def compiled_parser() -> bool:
    """Whether sqlglot's parser is the mypyc-compiled one (the sqlglotc package, ``sqlglot[c]``)."""
    import sqlglot.parser

    return not str(sqlglot.parser.__file__).endswith(".py")


def main() -> None:
    print(f"access-policy overhead per statement ({RUNS} runs each, {RESTRICTED} restricted datasets)")
    print(f"sqlglot {sqlglot.__version__}, compiled extensions (sqlglotc): {'yes' if compiled_parser() else 'no'}")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'dialect':8} {'statement':32} {'p50 ms':>8} {'p95 ms':>8} {'p95 CPU ms':>11}")
    dialects: tuple[Literal["duckdb", "trino"], ...] = ("duckdb", "trino")
    for dialect in dialects:
        guard = AccessGuard(payload(), dialect=dialect)
        cases = [(f"{n} restricted tables", statement(n)) for n in (1, 5, 10, 20)]
        cases.append(("20 open tables (checked only)", statement(20, prefix="open")))
        for label, sql in cases:
            p50, p95, cpu95 = measure(guard.check, sql)
            print(f"{dialect:8} {label:32} {p50:8.2f} {p95:8.2f} {cpu95:11.2f}")
        p50, p95, cpu95 = measure(lambda text, d=dialect: sqlglot.parse(text, read=d), statement(20))
        print(f"{dialect:8} {'20 tables: sqlglot parse alone':32} {p50:8.2f} {p95:8.2f} {cpu95:11.2f}")


if __name__ == "__main__":
    main()
