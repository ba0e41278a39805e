"""Event append latency through HTTP: batches of 100 events to one task; prints p50/p95/p99.

One sequential client posts the batches as an agent does (``POST /api/v1/tasks/{id}/events``). The measured
batches start once the server is past its start-up: its background loops begin when it first answers healthy,
and their first passes (the scheduler's jsonschema import, 1-13 s on 2 cores with the dev extras' URI grammars,
on a thread that holds the interpreter's lock most of that time) slowed every request meanwhile. The batches
of that warm-up are printed on their own line, and the server's time per batch (the
``lakehouse_event_append_seconds`` histogram: the ``ops.append_events`` call with its commit) beside the
client's, with the load average (the machine is often shared).
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from _harness import bench_env, fmt, percentiles
from prometheus_client.parser import text_string_to_metric_families

BATCHES = 500
BATCH = 100
WARMUP_SECONDS = 10.0  # after the server answered healthy; at least WARMUP_BATCHES
WARMUP_BATCHES = 50
APPEND_METRIC = "lakehouse_event_append_seconds"


def append_histogram(server: httpx.Client) -> dict[str, float]:
    """The server's append histogram: cumulative counts per bucket bound ("le"), plus "count" and "sum"."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        if family.name != APPEND_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                out[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_count"):
                out["count"] = sample.value
            elif sample.name.endswith("_sum"):
                out["sum"] = sample.value
    return out


def server_share(before: dict[str, float], after: dict[str, float]) -> str:
    count = after["count"] - before["count"]
    mean_ms = (after["sum"] - before["sum"]) / count * 1000
    shares = "  ".join(
        f"<= {float(le) * 1000:g} ms {(after[le] - before[le]) / count:6.1%}" for le in ("0.0025", "0.005", "0.01")
    )
    return f"mean {mean_ms:5.2f} ms  {shares}"


def main() -> None:
    with bench_env(lease_seconds="600") as env:
        healthy_at = time.monotonic()
        tenant = env.provision.tenant()
        user = httpx.Client(
            base_url=env.server.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {env.provision.user_token('operator')[1]}"},
        )
        agent = httpx.Client(
            base_url=env.server.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {env.provision.executor_token('bench')}"},
        )
        user.post(
            "/runs",
            json={
                "project": str(tenant.project_id),
                "spec": {"tasks": [{"key": "t", "engine": "shell", "pool": "bench", "command": "true"}]},
            },
        )
        agent.post("/executors/register", json={"engines": ["shell"]})
        (task,) = agent.post("/tasks/claim", json={"max_tasks": 1}).json()["tasks"]
        seq = 0

        def append() -> float:
            nonlocal seq
            events: list[dict[str, Any]] = [
                {
                    "seq": seq + i,
                    "level": "info",
                    "message": f"line {seq + i} of the bench log output",
                    "data": {"i": seq + i},
                }
                for i in range(BATCH)
            ]
            seq += BATCH
            started = time.perf_counter()
            response = agent.post(
                f"/tasks/{task['task_id']}/events", json={"lease_token": task["lease_token"], "events": events}
            )
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200 or response.json()["accepted"] != BATCH:
                raise SystemExit(f"append failed: {response.status_code} {response.text}")
            return elapsed

        warmup: list[float] = []
        while len(warmup) < WARMUP_BATCHES or time.monotonic() - healthy_at < WARMUP_SECONDS:
            warmup.append(append())
        before = append_histogram(agent)
        samples = [append() for _ in range(BATCHES)]
        after = append_histogram(agent)
        print(
            f"event_append: {BATCHES} batches x {BATCH} events over HTTP (client-side latency), after a "
            f"{WARMUP_SECONDS:g} s warm-up from the server's first healthy answer"
        )
        print(f"  {fmt(percentiles(samples))}")
        print(f"  throughput {BATCHES * BATCH / (sum(samples) / 1000):,.0f} events/s (one sequential client)")
        print(f"  server, ops.append_events call and commit: {server_share(before, after)}")
        print(f"  warm-up ({len(warmup)} batches, the server starting its loops): {fmt(percentiles(warmup))}")
        print("  load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
