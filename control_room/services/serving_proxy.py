"""The invocations proxy: ``POST /serving/{endpoint}/invocations`` forwarded to a healthy replica by weight.

Per request: the token's grant and the endpoint's routing table (healthy replicas per served version), both
from memory; a version drawn by its traffic percent, a replica of it round-robin, and the body forwarded as
bytes over a keep-alive connection (services/serving_http.py).

Requests never wait for the control plane while it answers in time: a grant or a table is re-read in the
background once it is ``*_REFRESH_S`` old, one read per key at a time, and the one in memory serves meanwhile,
up to ``*_TTL_S`` old (a revoked token works at most ``TOKEN_TTL_S``). Only a key never read, or one the
database did not re-read within its TTL, makes requests wait — for the one read in flight. Issue 23's bench
stalled a whole round (p50 1.25 s, max 11 s) when every request that found its token's grant expired ran its
own UPDATE of that token's row (row lock, WAL flush each), and the table's once-a-second re-read, under a
lock every request awaited, queued behind them for the pool's ten connections.
A replica that refuses the connection (its process died) is marked down for a few seconds and the request
goes to another one — it never reached the dead one, so nothing runs twice. Requests, errors and latency
are counted per version in 10-second buckets and written to ``ops.serving_request_stats`` every two seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from psycopg_pool import AsyncConnectionPool

from control_room.services import serving
from control_room.services.auth import hash_token
from control_room.services.errors import Forbidden, ServiceError
from control_room.services.serving import LATENCY_BOUNDS_MS, Route, TokenGrant
from control_room.services.serving_http import Broken, ReplicaClient, Unreachable

log = logging.getLogger("control_room.serving")

TABLE_REFRESH_S = 0.5  # a routing table is re-read (in the background) once it is this old
TABLE_TTL_S = 1.0  # ... and serves while the re-read runs, up to this old: a traffic change applies within 1 s
TOKEN_REFRESH_S = 5.0  # a token's grant is re-checked (in the background) once it is this old
TOKEN_TTL_S = 10.0  # ... and serves up to this old: a revoked token works at most this long
DOWN_FOR_S = 5.0
FLUSH_EVERY_S = 2.0
MAX_TRIES = 4
FORWARD_TIMEOUT_S = 60.0


class NoHealthyReplica(ServiceError, status=503, title="No healthy replica"):
    pass


class ReplicaFailed(ServiceError, status=502, title="Replica failed"):
    pass


def pick_route(routes: Sequence[Route], draw: float, *, skip: frozenset[str] = frozenset()) -> Route | None:
    """The version a request goes to: ``draw`` in [0, 1) picks by traffic percent among the versions that
    have a usable replica; a version with none hands its share to the others (no request is dropped)."""
    usable = [r for r in routes if any(a not in skip for a in r.addresses)]
    weighted = [r for r in usable if r.percent > 0]
    if not weighted:
        return usable[0] if usable else None
    total = sum(r.percent for r in weighted)
    cumulative = list(itertools.accumulate(r.percent for r in weighted))
    return weighted[min(bisect.bisect_right(cumulative, draw * total), len(weighted) - 1)]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RefreshAhead(Generic[K, V]):
    """Values read from the control plane, kept per key: re-read in the background once ``refresh_s`` old
    (one read per key at a time) and served meanwhile up to ``ttl_s`` old. A read that fails with a
    ServiceError (a revoked token, a deleted endpoint) drops the key, so the next request reads it again and
    gets that error; any other failure is logged and the value in memory serves until its TTL."""

    def __init__(self, name: str, *, refresh_s: float, ttl_s: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.refresh_s = refresh_s
        self.ttl_s = ttl_s
        self.clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self._reads: dict[K, asyncio.Task[V]] = {}
        self._forgotten: dict[K, float] = {}  # key -> when: a read that started before then is not kept

    async def get(self, key: K, read: Callable[[], Awaitable[V]], *, newer_than: float | None = None) -> V:
        """The value of ``key``; ``read()`` fetches it. ``newer_than`` (a clock time): only a value whose read
        started at or after it will do (waits for one)."""
        now = self.clock()
        held = self._values.get(key)
        if held is not None and newer_than is None and now - held[0] < self.ttl_s:
            if now - held[0] >= self.refresh_s:
                self._read(key, read)
            return held[1]
        if newer_than is not None and (task := self._reads.get(key)) is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)  # it may have started before newer_than: read again below if so
            held = self._values.get(key)
            if held is not None and held[0] >= newer_than:
                return held[1]
        return await asyncio.shield(self._read(key, read))

    def forget(self, key: K) -> None:
        """Drop ``key``'s value and any read under way, so the next ``get`` reads it anew: for a change this
        process has just committed (a read that started before it could hold the old value)."""
        self._values.pop(key, None)
        self._reads.pop(key, None)
        self._forgotten[key] = self.clock()

    def _read(self, key: K, read: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        task = self._reads.get(key)
        if task is None:
            task = self._reads[key] = asyncio.get_running_loop().create_task(
                self._store(key, read), name=f"serving-{self.name}-read"
            )
            task.add_done_callback(lambda done: self._done(key, done))
        return task

    async def _store(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        started = self.clock()
        try:
            value = await read()
        except ServiceError:
            self._values.pop(key, None)
            raise
        if started >= self._forgotten.get(key, started):
            self._values[key] = (started, value)
        return value

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]
        if task.cancelled():
            return
        error = task.exception()  # retrieved here too: a background read has nobody else awaiting it
        if error is not None and not isinstance(error, ServiceError):
            log.warning("serving proxy: reading the %s failed: %s: %s", self.name, type(error).__name__, error)

    async def close(self) -> None:
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        for task in reads:
            with contextlib.suppress(BaseException):
                await task


@dataclass
class _Counters:
    requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, latency_ms: float, *, error: bool) -> None:
        self.requests += 1
        self.errors += int(error)
        self.latency_ms_sum += latency_ms
        self.histogram[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)] += 1


@dataclass(frozen=True)
class ProxyReply:
    """What the replica answered (or the proxy, when no replica could)."""

    status: int
    body: bytes
    content_type: str
    model: str
    version: str
    address: str


class ServingProxy:
    """One per event loop (its replica connections belong to the loop)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        client: ReplicaClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.client = client or ReplicaClient(timeout_s=FORWARD_TIMEOUT_S)
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()  # noqa: S311 - spreading load, not secrets
        self._tables: RefreshAhead[uuid.UUID, tuple[str, list[Route]]] = RefreshAhead(
            "routing table", refresh_s=TABLE_REFRESH_S, ttl_s=TABLE_TTL_S, clock=clock
        )
        self._grants: RefreshAhead[str, TokenGrant] = RefreshAhead(
            "token", refresh_s=TOKEN_REFRESH_S, ttl_s=TOKEN_TTL_S, clock=clock
        )
        self._down: dict[str, float] = {}
        self._turn: dict[tuple[uuid.UUID, str], int] = {}
        self._counters: dict[tuple[uuid.UUID, datetime, str], _Counters] = {}
        self._flusher: asyncio.Task[None] | None = None

    # Authentication ---------------------------------------------------------------------------------------

    async def authorize(self, token: str, endpoint: str) -> TokenGrant:
        """The endpoint a serving token opens, checked against the one in the path (from memory; see above)."""

        async def read() -> TokenGrant:
            async with self.pool.connection() as conn:
                return await serving.authenticate_token(conn, token)

        grant = await self._grants.get(hash_token(token), read)
        if endpoint not in (grant.endpoint, str(grant.endpoint_id)):
            raise Forbidden(f"this token belongs to endpoint {grant.endpoint!r}, not {endpoint!r}")
        return grant

    # Routing ----------------------------------------------------------------------------------------------

    async def table(self, endpoint_id: uuid.UUID, *, fresh: bool = False) -> tuple[str, list[Route]]:
        """The endpoint's (status, routes); ``fresh``: read after this call began (a replica may just have
        become ready)."""

        async def read() -> tuple[str, list[Route]]:
            async with self.pool.connection() as conn:
                return await serving.routing_table(conn, endpoint_id=endpoint_id)

        return await self._tables.get(endpoint_id, read, newer_than=self.clock() if fresh else None)

    def forget_table(self, endpoint_id: uuid.UUID) -> None:
        """A change of the endpoint was committed here: this process routes by the new table from its next
        request on (other processes within TABLE_TTL_S)."""
        self._tables.forget(endpoint_id)

    def _down_now(self) -> frozenset[str]:
        now = self.clock()
        return frozenset(address for address, until in self._down.items() if until > now)

    def choose(self, endpoint_id: uuid.UUID, routes: Sequence[Route], skip: frozenset[str]) -> tuple[Route, str] | None:
        """A version by weight, then one of its usable replicas in turn."""
        route = pick_route(routes, self.rng.random(), skip=skip)
        if route is None:
            return None
        usable = [a for a in route.addresses if a not in skip]
        key = (endpoint_id, route.version)
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        return route, usable[turn % len(usable)]

    async def invoke(
        self, endpoint_id: uuid.UUID, body: bytes, *, content_type: str = "application/json"
    ) -> ProxyReply:
        """Forward one invocation; counts it in the endpoint's stats whatever happens."""
        started = time.perf_counter()
        status, routes = await self.table(endpoint_id)
        if status != "running":
            raise NoHealthyReplica("the endpoint is stopped; start it to serve requests")
        tried: set[str] = set()
        last_error = "no replica of the endpoint is healthy yet (starting, or restarting after a failure)"
        version = routes[0].version if routes else "-"
        for attempt in range(MAX_TRIES):
            choice = self.choose(endpoint_id, routes, self._down_now() | tried)
            if choice is None and attempt == 0:
                # The cached table may predate a replica becoming ready.
                status, routes = await self.table(endpoint_id, fresh=True)
                choice = self.choose(endpoint_id, routes, self._down_now() | tried)
            if choice is None:
                break
            route, address = choice
            version = route.version
            try:
                answer = await self.client.post(address, "/invocations", body, content_type)
            except Unreachable as exc:
                # The request never reached the replica: safe to send to another.
                tried.add(address)
                self._down[address] = self.clock() + DOWN_FOR_S
                last_error = f"replica {address} refused the connection ({exc})"
                continue
            except Broken as exc:
                self._count(endpoint_id, version, started, error=True)
                raise ReplicaFailed(f"version {version}: {exc}") from exc
            self._count(endpoint_id, version, started, error=answer.status >= 500)
            return ProxyReply(answer.status, answer.body, answer.content_type, route.model, route.version, address)
        self._count(endpoint_id, version, started, error=True)
        raise NoHealthyReplica(last_error)

    # Stats ------------------------------------------------------------------------------------------------

    def _count(self, endpoint_id: uuid.UUID, version: str, started: float, *, error: bool) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        wall = self.wall()
        bucket = datetime.fromtimestamp(
            int(wall.timestamp()) // serving.BUCKET_SECONDS * serving.BUCKET_SECONDS, tz=UTC
        )
        self._counters.setdefault((endpoint_id, bucket, version), _Counters()).add(latency_ms, error=error)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later(), name="serving-stats")

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_EVERY_S)
        await self.flush()

    async def flush(self) -> None:
        """Write the counters gathered so far (added to what the buckets hold)."""
        counters, self._counters = self._counters, {}
        if not counters:
            return
        try:
            async with self.pool.connection() as conn:
                for (endpoint_id, bucket, version), c in counters.items():
                    await serving.record_requests(
                        conn, endpoint_id=endpoint_id, bucket_start=bucket, version=version, requests=c.requests,
                        errors=c.errors, latency_ms_sum=c.latency_ms_sum, histogram=c.histogram,
                    )  # fmt: skip
        except Exception:
            log.exception("recording serving stats failed; %d buckets are lost", len(counters))

    async def close(self) -> None:
        await self._tables.close()
        await self._grants.close()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        await self.client.aclose()


# Keyed by the loop itself, weakly: an id(loop) could be handed on to a later loop once the first is freed.
_proxies: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ServingProxy] = weakref.WeakKeyDictionary()


def proxy_for(pool: AsyncConnectionPool) -> ServingProxy:
    """This event loop's proxy (created on first use)."""
    loop = asyncio.get_running_loop()
    proxy = _proxies.get(loop)
    if proxy is None or proxy.pool is not pool:
        proxy = _proxies[loop] = ServingProxy(pool)
    return proxy
