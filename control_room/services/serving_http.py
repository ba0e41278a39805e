"""A lean keep-alive HTTP/1.1 client for the invocations proxy's one request shape: ``POST /invocations``.

At 200 requests/s httpx spent about 40 % of the API server's CPU per proxied request (its connection pool,
anyio streams and events; measured with py-spy, issue 23). This client writes one request and reads one
response over asyncio streams, with a pool of idle connections per replica address, and nothing else:
no redirects, cookies, auth or proxies (a replica is an ``mlflow models serve`` process on a known port).

Two failures matter to the proxy and are kept apart:

* :class:`Unreachable` — the request never reached a replica (connection refused or timed out): the proxy
  may send it to another one;
* :class:`Broken` — the replica failed after receiving it (reset, closed or timed out mid-answer).

A pooled connection the replica closed while idle (its keep-alive expired, or it restarted) gives EOF before
any byte of an answer; that request is written again on a new connection, as httpcore does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CONNECT_TIMEOUT_S = 2.0
# Below uvicorn's default keep-alive (5 s), so an idle connection is dropped here before the replica does.
IDLE_FOR_S = 4.0
MAX_IDLE_PER_ADDRESS = 100
MAX_HEADER_BYTES = 65_536


class Unreachable(Exception):
    """The request did not reach the replica."""


class Broken(Exception):
    """The replica took the request and failed to answer it."""


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return now - self.idle_since < IDLE_FOR_S and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Stale(Exception):
    """A reused connection was closed by the replica before it answered."""


@dataclass
class ReplicaClient:
    """One per event loop; ``post`` is safe to call concurrently (each call holds its own connection)."""

    timeout_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _idle: dict[str, list[_Connection]] = field(default_factory=dict)

    async def post(self, address: str, path: str, body: bytes, content_type: str) -> Answer:
        """POST ``body`` to ``http://{address}{path}`` and return the answer (raises Unreachable, Broken)."""
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\naccept: */*\r\n\r\n"
        ).encode("latin-1")
        connection = self._take(address)
        if connection is not None:
            try:
                return await self._exchange(address, connection, head, body)
            except _Stale:
                pass
        connection = await self._connect(address)
        try:
            return await self._exchange(address, connection, head, body)
        except _Stale as exc:  # a new connection closed before answering: the replica is going away
            raise Broken(f"replica {address} closed the connection without answering") from exc

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # -----------------------------------------------------------------------------------------------

    def _take(self, address: str) -> _Connection | None:
        idle = self._idle.get(address)
        now = self.clock()
        while idle:
            connection = idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def _give_back(self, address: str, connection: _Connection) -> None:
        idle = self._idle.setdefault(address, [])
        if len(idle) >= MAX_IDLE_PER_ADDRESS:
            connection.close()
            return
        connection.idle_since = self.clock()
        idle.append(connection)

    async def _connect(self, address: str) -> _Connection:
        host, _, port = address.rpartition(":")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port), limit=MAX_HEADER_BYTES)
        except (OSError, TimeoutError, ValueError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return _Connection(reader, writer)

    async def _exchange(self, address: str, connection: _Connection, head: bytes, body: bytes) -> Answer:
        reader, writer = connection.reader, connection.writer
        keep = False
        try:
            async with asyncio.timeout(self.timeout_s):
                writer.writelines((head, body))
                try:
                    status_line = await reader.readuntil(b"\r\n")
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise
                    raise _Stale from exc  # closed before a byte of an answer
                answer, keep = await self._read_rest(reader, status_line)
                return answer
        except _Stale:
            connection.close()
            raise
        except TimeoutError as exc:
            connection.close()
            raise Broken(f"replica {address} did not answer within {self.timeout_s:.0f} s") from exc
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError) as exc:
            connection.close()
            raise Broken(f"replica {address} failed while answering: {type(exc).__name__}: {exc}") from exc
        finally:
            if keep:
                self._give_back(address, connection)
            elif not connection.writer.is_closing():
                connection.close()

    @staticmethod
    async def _read_rest(reader: asyncio.StreamReader, status_line: bytes) -> tuple[Answer, bool]:
        """The headers and body after the status line; and whether the connection can be reused."""
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        head = await reader.readuntil(b"\r\n\r\n")
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        content_type = "application/json"
        for line in head.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"content-type":
                content_type = value.strip().decode("latin-1")
        if chunked:
            pieces = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                pieces.append((await reader.readexactly(size + 2))[:-2])
            body = b"".join(pieces)
        elif length is not None:
            body = await reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()  # delimited by the connection's end
            close = True
        return Answer(status, content_type, body), not close
