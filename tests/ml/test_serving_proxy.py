"""The invocations proxy's memory of grants and routing tables (services/serving_proxy.py) against a real
Postgres and a stub replica on a real socket: requests do not wait for the control plane while what they
need is within its TTL (one background re-read per key, however many requests), they wait for exactly one
read past it, a revoked token is refused within the TTL, and a token's last_used_at is written at most once
a minute. The clock is injected; the database is made slow by a lock another connection holds."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from control_room.services import serving_proxy
from control_room.services.auth import TOKEN_TOUCH_SECONDS, hash_token, new_token
from control_room.services.errors import Unauthorized
from control_room.services.serving import SERVING_TOKEN_PREFIX, authenticate_token
from control_room.services.serving_proxy import TOKEN_REFRESH_S, TOKEN_TTL_S, ServingProxy
from tests.live import Provisioner
from tests.ml.test_serving_http import echo, replica

BODY = b'{"inputs": [[1.0]]}'


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test (with its fixtures) in a new event loop (the suite has no async plugin)."""

    @functools.wraps(test)
    def run(**fixtures: Any) -> None:
        asyncio.run(test(**fixtures))

    return run


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    endpoint_id: uuid.UUID
    name: str
    token: str


def serve_endpoint(database_url: str, provision: Provisioner, address: str) -> Served:
    """An endpoint whose one replica (its task claimed with a long lease) reports ``address``, and a token."""
    tenant = provision.tenant("proxy")
    pool, name = f"serve-{uuid.uuid4().hex[:6]}", f"proxy-{uuid.uuid4().hex[:6]}"
    provision.executor_token(pool, tenant=tenant)
    token = new_token(SERVING_TOKEN_PREFIX)
    with psycopg.connect(database_url, autocommit=True) as conn:
        executor = conn.execute("select id from ops.executors where pool = %s", (pool,)).fetchone()
        assert executor
        conn.execute("update ops.executors set engines = '{serving}' where id = %s", (executor[0],))
        row = conn.execute(
            "select ops.create_serving_endpoint(%s, 'dev', %s, 'm', '1', 1, %s, null, 'tests')",
            (tenant.project_id, name, pool),
        ).fetchone()
        assert row
        conn.execute(
            "select ops.create_serving_token(%s, 'tests', %s, %s, 'tests')", (row[0], token[:12], hash_token(token))
        )
        claimed = conn.execute(
            "select task_id, lease_token from ops.claim_tasks(%s, array['serving'], null, 1, 3600)", (executor[0],)
        ).fetchone()
        assert claimed
        conn.execute("select * from ops.report_serving_replica(%s, %s, %s, 1)", (claimed[0], claimed[1], address))
    return Served(uuid.UUID(str(row[0])), name, token)


@pytest.fixture(scope="module")
def provision(ml_database_url: str) -> Provisioner:
    return Provisioner(ml_database_url)


@asynccontextmanager
async def proxy_of(database_url: str, clock: Clock) -> AsyncIterator[ServingProxy]:
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False)
    await pool.open()
    proxy = ServingProxy(pool, clock=clock)
    try:
        yield proxy
    finally:
        await proxy.close()
        await pool.close()


@asynccontextmanager
async def blocked(database_url: str, table: str = "serving_endpoints") -> AsyncIterator[Callable[[], int]]:
    """Holds a lock that stops every read of ``ops.{table}`` until the block ends (serving_endpoints: the
    grant's and the routing table's; serving_tokens: the grant's; serving_endpoint_revisions: the routing
    table's); yields a function counting the reads waiting on it."""
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute(sql.SQL("lock table ops.{} in access exclusive mode").format(
            sql.Identifier(table)))  # fmt: skip
        with psycopg.connect(database_url, autocommit=True) as watcher:

            def waiting() -> int:
                row = watcher.execute(
                    "select count(*) from pg_stat_activity where datname = current_database() "
                    "and wait_event_type = 'Lock' and pid <> %s",
                    (holder.info.backend_pid,),
                ).fetchone()
                return int(row[0]) if row else 0

            yield waiting
        await holder.rollback()


async def until(what: str, done: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {within_s:.0f} s"
        await asyncio.sleep(0.02)


async def invoke(proxy: ServingProxy, served: Served) -> int:
    grant = await proxy.authorize(served.token, served.name)
    return (await proxy.invoke(grant.endpoint_id, BODY)).status


@pytest.mark.parametrize(
    ("table", "age"),
    [("serving_tokens", TOKEN_REFRESH_S + 0.5), ("serving_endpoint_revisions", serving_proxy.TABLE_REFRESH_S + 0.2)],
    ids=["grant", "routing-table"],
)
@in_loop
async def test_requests_past_the_refresh_age_do_not_wait_for_a_slow_database(
    ml_database_url: str, provision: Provisioner, table: str, age: float
) -> None:
    async with replica(echo) as (address, per_connection, _):
        served = serve_endpoint(ml_database_url, provision, address)
        clock = Clock()
        async with proxy_of(ml_database_url, clock) as proxy:
            assert await invoke(proxy, served) == 200  # reads the grant and the table
            clock.now += age  # one of them is due for a re-read, within its TTL
            async with blocked(ml_database_url, table) as waiting:
                answers = await asyncio.wait_for(asyncio.gather(*(invoke(proxy, served) for _ in range(20))), 5)
                assert answers == [200] * 20  # answered from memory while the database does not answer
                await until("the re-read waiting on the lock", lambda: waiting() == 1)
                more = await asyncio.wait_for(asyncio.gather(*(invoke(proxy, served) for _ in range(20))), 5)
                assert more == [200] * 20
                assert waiting() == 1  # one re-read, however many requests found it due
            await until("the re-read done", lambda: not proxy._grants._reads and not proxy._tables._reads)
    assert sum(per_connection) == 41


@in_loop
async def test_past_the_ttl_requests_wait_for_one_read(ml_database_url: str, provision: Provisioner) -> None:
    async with replica(echo) as (address, _, _):
        served = serve_endpoint(ml_database_url, provision, address)
        clock = Clock()
        async with proxy_of(ml_database_url, clock) as proxy:
            assert await invoke(proxy, served) == 200
            clock.now += TOKEN_TTL_S + 0.5
            async with blocked(ml_database_url) as waiting:
                pending = [asyncio.ensure_future(invoke(proxy, served)) for _ in range(10)]
                await until("the grant's one read waiting on the lock", lambda: waiting() == 1)
                assert not any(task.done() for task in pending)  # they wait for it ...
            assert await asyncio.wait_for(asyncio.gather(*pending), 10) == [200] * 10  # ... and share it


@in_loop
async def test_a_revoked_token_is_refused_within_the_ttl(ml_database_url: str, provision: Provisioner) -> None:
    async with replica(echo) as (address, _, _):
        served = serve_endpoint(ml_database_url, provision, address)
        clock = Clock()
        async with proxy_of(ml_database_url, clock) as proxy:
            assert await invoke(proxy, served) == 200
            with psycopg.connect(ml_database_url, autocommit=True) as conn:
                conn.execute("update ops.serving_tokens set revoked_at = now() where endpoint_id = %s",
                             (served.endpoint_id,))  # fmt: skip
            assert await invoke(proxy, served) == 200  # the grant in memory is fresh
            clock.now += TOKEN_REFRESH_S + 0.5
            assert await invoke(proxy, served) == 200  # still within the TTL; the re-read starts
            await until("the grant re-read", lambda: not proxy._grants._reads)
            with pytest.raises(Unauthorized):
                await invoke(proxy, served)
        async with proxy_of(ml_database_url, clock) as proxy:  # a grant past its TTL is never served
            clock.now += TOKEN_TTL_S + 0.5
            with pytest.raises(Unauthorized):
                await invoke(proxy, served)


@in_loop
async def test_a_stopped_endpoint_is_refused_after_the_table_is_re_read(
    ml_database_url: str, provision: Provisioner
) -> None:
    async with replica(echo) as (address, _, _):
        served = serve_endpoint(ml_database_url, provision, address)
        clock = Clock()
        async with proxy_of(ml_database_url, clock) as proxy:
            assert await invoke(proxy, served) == 200
            with psycopg.connect(ml_database_url, autocommit=True) as conn:
                conn.execute("update ops.serving_endpoints set status = 'stopped' where id = %s", (served.endpoint_id,))
            clock.now += serving_proxy.TABLE_REFRESH_S + 0.1
            assert await invoke(proxy, served) == 200  # served by the table in memory; its re-read starts
            await until("the table re-read", lambda: not proxy._tables._reads)
            with pytest.raises(serving_proxy.NoHealthyReplica):
                await invoke(proxy, served)


@in_loop
async def test_last_used_at_is_written_at_most_once_a_minute(ml_database_url: str, provision: Provisioner) -> None:
    served = serve_endpoint(ml_database_url, provision, "127.0.0.1:9")
    pool = AsyncConnectionPool(ml_database_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False)
    await pool.open()
    try:

        def row() -> tuple[object, str]:
            with psycopg.connect(ml_database_url, autocommit=True) as conn:
                found = conn.execute(
                    "select last_used_at, xmin::text from ops.serving_tokens where endpoint_id = %s",
                    (served.endpoint_id,),
                ).fetchone()
            assert found
            return found[0], found[1]

        assert row()[0] is None
        async with pool.connection() as conn:
            assert (await authenticate_token(conn, served.token)).endpoint_id == served.endpoint_id
        first = row()
        assert first[0] is not None
        async with pool.connection() as conn:
            await authenticate_token(conn, served.token)
        assert row() == first  # not written again (same row version)
        with psycopg.connect(ml_database_url, autocommit=True) as sync:
            sync.execute(
                "update ops.serving_tokens set last_used_at = now() - make_interval(secs => %s) where endpoint_id = %s",
                (TOKEN_TOUCH_SECONDS + 5, served.endpoint_id),
            )
        stale = row()
        async with pool.connection() as conn:
            await authenticate_token(conn, served.token)
        assert row()[0] > stale[0]  # type: ignore[operator]
    finally:
        await pool.close()
