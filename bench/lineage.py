"""Lineage benchmarks (issue 21). Prints figures; targets in the issue.

* OpenLineage ingest through HTTP: ``POST /api/v1/lineage`` with one event per request (as the
  OpenLineage clients send them), from 8 concurrent connections; each event is validated against the
  OpenLineage JSON Schema and stored (job, input and output datasets, edge with column lineage).
  Target: at least 500 events/s on 2 cores.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from _harness import bench_env, fmt, percentiles

EVENTS = 3000
CONCURRENCY = 8
JOBS = 300
NS = "postgres://warehouse.bench:5432"
FACET = {"_producer": "https://example.com/bench", "_schemaURL": "https://openlineage.io/spec/facets/x.json"}


def event(index: int) -> dict[str, Any]:
    job = index // 2 % JOBS
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-run-{index // 2}"))
    return {
        "eventType": "START" if index % 2 == 0 else "COMPLETE",
        "eventTime": f"2026-12-03T10:{index // 120 % 60:02d}:{index // 2 % 60:02d}.{index % 2}Z",
        "producer": "https://example.com/bench",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {"namespace": "bench", "name": f"job_{job}"},
        "inputs": [{"namespace": NS, "name": f"raw.t{job}"}],
        "outputs": [
            {
                "namespace": NS,
                "name": f"mart.t{job}",
                "facets": {
                    "schema": {**FACET, "fields": [{"name": "id", "type": "BIGINT"}, {"name": "v", "type": "TEXT"}]},
                    "columnLineage": {
                        **FACET,
                        "fields": {"v": {"inputFields": [{"namespace": NS, "name": f"raw.t{job}", "field": "v"}]}},
                    },
                },
            }
        ],
    }


async def ingest(base_url: str, token: str) -> tuple[float, list[float]]:
    samples: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(EVENTS):
        queue.put_nowait(index)
    bodies = [event(i) for i in range(EVENTS)]
    limits = httpx.Limits(max_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                started = time.perf_counter()
                reply = await client.post("/api/v1/lineage", json=bodies[index])
                samples.append((time.perf_counter() - started) * 1000)
                if reply.status_code != 201:
                    raise SystemExit(f"ingest failed: {reply.status_code} {reply.text}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - began, samples


def main() -> None:
    with bench_env() as env:
        tenant = env.provision.tenant()
        token = env.provision.user_token("operator", tenant)[1]
        elapsed, samples = asyncio.run(ingest(env.server.base_url, token))
        print(f"openlineage ingest: {EVENTS} RunEvents over HTTP, {CONCURRENCY} concurrent clients")
        print(f"  {fmt(percentiles(samples))}")
        print(f"  throughput {EVENTS / elapsed:,.0f} events/s (target >= 500/s on 2 cores)")


if __name__ == "__main__":
    main()
