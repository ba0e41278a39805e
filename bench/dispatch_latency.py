"""Dispatch latency with idle long-polling agents: runs submitted at a steady rate through the API;
prints submit -> claimed p50/p95/p99 (client clock: submit request sent -> claim response received).

The measured runs start once the server is past its start-up, as in event_append: its background loops begin
when it first answers healthy, and their first passes (the scheduler's jsonschema import, seconds on 2 cores,
on a thread that holds the interpreter's lock much of that time) slow every request meanwhile. The runs of
that warm-up are printed on their own line, with the load average (the machine is often shared)."""

from __future__ import annotations

import os
import threading
import time

import httpx
from _harness import bench_env, echo_round_trips, fmt, percentiles

AGENTS = 4
RUNS = 200
RATE_PER_S = 20
WARMUP_SECONDS = 10.0  # after the server answered healthy; at least WARMUP_RUNS
WARMUP_RUNS = 40
TASK = {"key": "t", "engine": "shell", "pool": "latency", "command": "true"}


def main() -> None:
    with bench_env(lease_seconds="600") as env:
        healthy_at = time.monotonic()
        project = str(env.provision.tenant().project_id)
        base = env.server.base_url + "/api/v1"
        user = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {env.provision.user_token('operator')[1]}"}
        )
        claimed_at: dict[str, float] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def agent(token: str) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
                c.post("/executors/register", json={"engines": ["shell"], "max_concurrency": 1000})
                while not stop.is_set():
                    tasks = c.post("/tasks/claim", json={"max_tasks": 1, "wait_s": 2}).json()["tasks"]
                    now = time.perf_counter()
                    for t in tasks:
                        with lock:
                            claimed_at[t["run_id"]] = now
                        c.post(
                            f"/tasks/{t['task_id']}/finalize",
                            json={"lease_token": t["lease_token"], "outcome": "succeeded"},
                        )

        answered: list[float] = []  # submit sent -> its own response, ms: the part of dispatch before the commit

        def submit_round(runs: int, until: float = 0.0) -> list[float]:
            """Submit ``runs`` runs at the steady rate (more, until the monotonic time ``until``); the
            submit -> claimed latency of each, in ms, once the agents have claimed them all."""
            submitted_at: dict[str, float] = {}
            answered.clear()
            interval = 1.0 / RATE_PER_S
            next_at = time.perf_counter()
            while len(submitted_at) < runs or time.monotonic() < until:
                time.sleep(max(0.0, next_at - time.perf_counter()))  # pacing the steady submit rate
                sent = time.perf_counter()
                run = user.post("/runs", json={"project": project, "spec": {"tasks": [TASK]}})
                answered.append((time.perf_counter() - sent) * 1000)
                submitted_at[run.json()["id"]] = sent
                next_at += interval
            deadline = time.monotonic() + 30
            while not submitted_at.keys() <= claimed_at.keys() and time.monotonic() < deadline:
                time.sleep(0.05)  # agents run in threads; this only waits for them to report
            with lock:
                return [(claimed_at[r] - s) * 1000 for r, s in submitted_at.items() if r in claimed_at]

        threads = [
            threading.Thread(target=agent, args=(env.provision.executor_token("latency"),), daemon=True)
            for _ in range(AGENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)  # agents register and enter their first long poll (set-up, not a wait-for)
        warmup = submit_round(WARMUP_RUNS, until=healthy_at + WARMUP_SECONDS)
        samples = submit_round(RUNS)
        stop.set()
        paced_echo, eager_echo = echo_round_trips(1.0 / RATE_PER_S), echo_round_trips(0.0)
        print(
            f"dispatch_latency: {AGENTS} idle long-polling agents, {RUNS} runs at {RATE_PER_S}/s "
            f"({len(samples)} claimed), after a {WARMUP_SECONDS:g} s warm-up from the server's first healthy answer"
        )
        print(f"  submit -> claimed  {fmt(percentiles(samples))}")
        print(f"  submit -> answered {fmt(percentiles(answered))}  (the submit's own response, for comparison)")
        print(
            f"  this machine's floor: a 50-byte round trip to another process {fmt(percentiles(paced_echo))} "
            f"at {RATE_PER_S}/s, {percentiles(eager_echo)['p50']:.2f} ms p50 back to back "
            "(a dispatch makes about a dozen such hand-offs: client, API, Postgres, listener, agent)"
        )
        print(f"  warm-up ({len(warmup)} runs, the server starting its loops): {fmt(percentiles(warmup))}")
        print("  load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
