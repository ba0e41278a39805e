"""Wall time of `lakehouse` commands that touch the database, while a control room serves the same database
(embedded Postgres, migrated, with a live API server and its background loops): median and max of
CLI_BENCH_REPEATS (5) runs of each command, as a person would type it. The target is under 2 s each.

Two columns: as installed (Python's bytecode cache in use, as on any machine after the first run; the
cache goes to a temporary PYTHONPYCACHEPREFIX, not into the tree), and with PYTHONDONTWRITEBYTECODE=1
(every module compiled from source on every run, as in some CI shells).

    .venv/bin/python bench/cli.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg
from _harness import ROOT, bench_env

LAKEHOUSE = ROOT / ".venv" / "bin" / "lakehouse"
REPEATS = int(os.environ.get("CLI_BENCH_REPEATS", "5"))
TARGET_S = 2.0


def timed(args: list[str], env: dict[str, str]) -> float:
    """Seconds from starting `lakehouse <args>` to its exit (which must be 0)."""
    started = time.perf_counter()
    done = subprocess.run([str(LAKEHOUSE), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lakehouse {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    with bench_env() as bench, tempfile.TemporaryDirectory(prefix="lh-bench-pycache-") as pycache:
        tenant = bench.provision.tenant()
        bench.provision.user_token("operator")  # a person with a project role, and a token to list
        with psycopg.connect(bench.database_url, autocommit=True) as conn:
            org_slug, project_slug, email = conn.execute(
                "select o.slug, p.slug, u.email from ops.projects p join ops.orgs o on o.id = p.org_id "
                "join ops.project_members m on m.project_id = p.id join ops.users u on u.id = m.user_id "
                "where p.id = %s limit 1",
                (tenant.project_id,),
            ).fetchone() or ("", "", "")
        base = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE_")}
        base["LAKEHOUSE_DATABASE_URL"] = bench.database_url
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        cached = {**base, "PYTHONPYCACHEPREFIX": pycache}
        uncached = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
        commands: list[tuple[str, list[str]]] = [
            ("--help", ["--help"]),
            ("executors token create", ["executors", "token", "create", "--name", "{unique}", "--org", org_slug]),
            ("tokens create", ["tokens", "create", "--email", email, "--name", "{unique}"]),
            ("tokens list", ["tokens", "list", "--email", email]),
            ("jobs list", ["jobs", "list", "--project", project_slug]),
            ("alerts rules", ["alerts", "rules"]),
            ("db status", ["db", "status"]),
        ]
        for _label, template in commands:  # warm-up: fills the bytecode cache, as a first run would
            timed([arg.replace("{unique}", f"warm-{uuid.uuid4().hex[:8]}") for arg in template], cached)
        print(f"lakehouse commands against a running control room ({REPEATS} runs each; target < {TARGET_S:g} s)")
        print(f"{'command':<26} {'median':>8} {'max':>8}   {'no bytecode cache: median':>26}")
        slow = []
        for label, template in commands:
            samples: dict[str, list[float]] = {"cached": [], "uncached": []}
            for _ in range(REPEATS):
                for kind, env in (("cached", cached), ("uncached", uncached)):
                    args = [arg.replace("{unique}", f"bench-{uuid.uuid4().hex[:8]}") for arg in template]
                    samples[kind].append(timed(args, env))
            median = statistics.median(samples["cached"])
            print(
                f"{label:<26} {median:7.2f}s {max(samples['cached']):7.2f}s   "
                f"{statistics.median(samples['uncached']):25.2f}s"
            )
            if median >= TARGET_S:
                slow.append(label)
        print("all under target" if not slow else f"over target: {', '.join(slow)}")
        sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
