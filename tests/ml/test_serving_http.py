"""The proxy's replica client (services/serving_http.py, over aiohttp) against real sockets: keep-alive reuse,
chunked and close-delimited answers, a replica that closed an idle connection (resent once, on another
connection), idle connections dropped, refused connections and broken answers (never resent)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from control_room.services.serving_http import IDLE_FOR_S, Broken, ReplicaClient, Unreachable
from tests.live import free_port

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # returns False to close after answering


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test in a new event loop (the suite has no async plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


@asynccontextmanager
async def replica(handler: Handler) -> AsyncIterator[tuple[str, list[int], list[int]]]:
    """A real TCP server on 127.0.0.1; yields its address, the number of requests per connection and the
    connections (by index) that have ended."""
    per_connection: list[int] = []
    ended: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        per_connection.append(0)
        index = len(per_connection) - 1
        try:
            while (body := await _read_request(reader)) is not None:
                per_connection[index] += 1
                if not await handler(body, writer):
                    break
        finally:
            writer.close()
            ended.append(index)

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield f"127.0.0.1:{port}", per_connection, ended
    finally:
        server.close()


def _answer(body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{headers}".encode() + b"\r\n" + body


async def echo(body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(_answer(b'{"echo": ' + body + b"}", f"content-length: {len(body) + 10}"))
    return True


@in_loop
async def test_keep_alive_reuses_one_connection_and_passes_bytes_through() -> None:
    async with replica(echo) as (address, per_connection, _):
        client = ReplicaClient()
        answers = [await client.post(address, "/invocations", b'{"n": %d}' % n, "application/json") for n in range(5)]
        await client.aclose()
    assert [a.body for a in answers] == [b'{"echo": {"n": %d}}' % n for n in range(5)]
    assert {a.status for a in answers} == {200} and answers[0].content_type == "application/json"
    assert per_connection == [5]


@in_loop
async def test_chunked_and_close_delimited_answers() -> None:
    async def chunked(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "transfer-encoding: chunked"))
        return True

    async def until_close(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(b"all of it", "connection: close"))
        return False

    async with replica(chunked) as (address, per_connection, _):
        client = ReplicaClient()
        assert (await client.post(address, "/invocations", b"{}", "application/json")).body == b"hello world"
        assert (await client.post(address, "/invocations", b"{}", "application/json")).body == b"hello world"
        await client.aclose()
    assert per_connection == [2]
    async with replica(until_close) as (address, per_connection, _):
        client = ReplicaClient()
        for _ in range(2):
            assert (await client.post(address, "/invocations", b"{}", "application/json")).body == b"all of it"
        await client.aclose()
    assert per_connection == [1, 1]  # a connection the answer closed is not reused


@in_loop
async def test_an_idle_connection_the_replica_closed_is_replaced_without_failing() -> None:
    async def once(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_answer(b"{}", "content-length: 2"))
        return False  # closes after answering, although it said nothing of it (keep-alive expired)

    async with replica(once) as (address, per_connection, _):
        client = ReplicaClient()
        for _ in range(3):
            assert (await client.post(address, "/invocations", b"{}", "application/json")).status == 200
        await client.aclose()
    assert per_connection == [1, 1, 1]


async def until(done: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@in_loop
async def test_a_pooled_connection_closed_by_the_replica_is_written_again_on_another_one() -> None:
    # Keyed by the writer itself, not id(writer): a closed connection's writer, once freed, can leave its id to
    # the next connection's, which would then be taken for a second request and dropped.
    seen: dict[asyncio.StreamWriter, int] = {}

    async def drops_the_second(body: bytes, writer: asyncio.StreamWriter) -> bool:
        # Each connection answers its first request and closes on its second without a byte of an answer:
        # what a keep-alive expiring just as a request arrives looks like to the client.
        seen[writer] = seen.get(writer, 0) + 1
        if seen[writer] > 1:
            return False
        writer.write(_answer(b'{"ok": ' + body + b"}", f"content-length: {len(body) + 8}"))
        return True

    async with replica(drops_the_second) as (address, per_connection, _):
        client = ReplicaClient()
        answers = [await client.post(address, "/invocations", b"%d" % n, "application/json") for n in range(3)]
        await client.aclose()
    assert [a.body for a in answers] == [b'{"ok": 0}', b'{"ok": 1}', b'{"ok": 2}']
    assert per_connection == [2, 2, 1]  # the dropped request went again, once, on a new connection


@in_loop
async def test_a_new_connection_closed_without_an_answer_is_broken_and_not_sent_twice() -> None:
    async def drops(body: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with replica(drops) as (address, per_connection, _):
        client = ReplicaClient()
        with pytest.raises(Broken, match="closed the connection without answering"):
            await client.post(address, "/invocations", b"{}", "application/json")
        await client.aclose()
    assert per_connection == [1]


@in_loop
async def test_connections_idle_too_long_are_closed_and_not_reused() -> None:
    assert IDLE_FOR_S < 5.0  # below uvicorn's keep-alive: the client drops an idle connection first
    async with replica(echo) as (address, per_connection, ended):
        client = ReplicaClient(idle_for_s=0.2)
        await client.post(address, "/invocations", b"1", "application/json")
        await until(lambda: ended == [0])  # the client closed the idle connection
        await client.post(address, "/invocations", b"2", "application/json")
        await client.aclose()
    assert per_connection == [1, 1]


@in_loop
async def test_refused_is_unreachable_and_a_broken_answer_is_broken() -> None:
    client = ReplicaClient()
    with pytest.raises(Unreachable):
        await client.post(f"127.0.0.1:{free_port()}", "/invocations", b"{}", "application/json")

    async def half(body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"predic')
        return False

    async with replica(half) as (address, _, _):
        with pytest.raises(Broken, match="failed while answering"):
            await client.post(address, "/invocations", b"{}", "application/json")

    async def silent(body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.5)  # the replica takes longer than the client's timeout
        return False

    async with replica(silent) as (address, _, _):
        slow = ReplicaClient(timeout_s=0.1)
        with pytest.raises(Broken, match="did not answer"):
            await slow.post(address, "/invocations", b"{}", "application/json")
    await client.aclose()
