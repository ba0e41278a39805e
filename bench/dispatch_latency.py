"""Dispatch latency with idle long-polling agents: runs submitted at a steady rate through the API;
prints submit -> claimed p50/p95/p99 (client clock: submit request sent -> claim response received)."""

from __future__ import annotations

import threading
import time

import httpx
from _harness import bench_env, fmt, percentiles

AGENTS = 4
RUNS = 200
RATE_PER_S = 20
TASK = {"key": "t", "engine": "shell", "pool": "latency", "command": "true"}


def main() -> None:
    with bench_env(lease_seconds="600") as env:
        project = str(env.provision.tenant().project_id)
        base = env.server.base_url + "/api/v1"
        user = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {env.provision.user_token('operator')[1]}"}
        )
        submitted_at: dict[str, float] = {}
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

        threads = [
            threading.Thread(target=agent, args=(env.provision.executor_token("latency"),), daemon=True)
            for _ in range(AGENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)  # agents register and enter their first long poll (set-up, not a wait-for)
        interval = 1.0 / RATE_PER_S
        next_at = time.perf_counter()
        for _ in range(RUNS):
            time.sleep(max(0.0, next_at - time.perf_counter()))  # pacing the steady submit rate
            sent = time.perf_counter()
            run = user.post(
                "/runs",
                json={"project": project, "spec": {"tasks": [TASK]}},
            )
            submitted_at[run.json()["id"]] = sent
            next_at += interval
        deadline = time.monotonic() + 30
        while len(claimed_at) < RUNS and time.monotonic() < deadline:
            time.sleep(0.05)  # agents run in threads; this only waits for them to report
        stop.set()
        samples = [(claimed_at[r] - s) * 1000 for r, s in submitted_at.items() if r in claimed_at]
        print(
            f"dispatch_latency: {AGENTS} idle long-polling agents, {RUNS} runs at {RATE_PER_S}/s "
            f"({len(samples)} claimed)"
        )
        print(f"  submit -> claimed  {fmt(percentiles(samples))}")


if __name__ == "__main__":
    main()
