"""Event append latency through HTTP: batches of 100 events to one task; prints p50/p95/p99."""

from __future__ import annotations

import time

import httpx
from _harness import bench_env, fmt, percentiles

BATCHES = 500
BATCH = 100


def main() -> None:
    with bench_env(lease_seconds="600") as env:
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
        samples: list[float] = []
        seq = 0
        for _ in range(BATCHES):
            events = [
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
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or response.json()["accepted"] != BATCH:
                raise SystemExit(f"append failed: {response.status_code} {response.text}")
        print(f"event_append: {BATCHES} batches x {BATCH} events over HTTP (client-side latency)")
        print(f"  {fmt(percentiles(samples))}")
        print(f"  throughput {BATCHES * BATCH / (sum(samples) / 1000):,.0f} events/s (one sequential client)")


if __name__ == "__main__":
    main()
