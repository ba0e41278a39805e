"""The invocations proxy's client for model replicas: ``POST /invocations`` over aiohttp's keep-alive pool.

aiohttp's C HTTP parser spends about half of httpx's CPU per proxied request (issue 23: httpx was ~40 % of
the API server's CPU per request). It replaced a hand-written HTTP/1.1 client which was leaner still (client
CPU per request ~55 us against aiohttp's ~125 us, stub replica; API server CPU per proxied request 1.26 ->
1.55 ms, medians of 4 noisy bench/serving.py runs): a kept library over hand-written protocol code.
One ``ClientSession`` per event loop, its ``TCPConnector`` keeping idle connections per replica address for
``IDLE_FOR_S``; no redirects, cookies, auth, proxies or decompression (a replica is an ``mlflow models
serve`` process on a known port, and its answer's bytes pass through as they came).

Two failures matter to the proxy and are kept apart:

* :class:`Unreachable` — the request never reached a replica (connection refused or timed out): the proxy
  may send it to another one;
* :class:`Broken` — the replica failed after receiving it (reset, closed or timed out mid-answer).

A pooled connection the replica closed while idle (its keep-alive expired, or it restarted) fails before
any byte of an answer; that request is written again on another connection, as httpcore does. aiohttp
itself resends only idempotent methods, so this module watches which attempts went over a reused
connection (a trace hook) and resends those alone: a request that failed on a new connection is not sent
twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp
from yarl import URL

CONNECT_TIMEOUT_S = 2.0
# Below uvicorn's default keep-alive (5 s), so an idle connection is dropped here before the replica does.
IDLE_FOR_S = 4.0
MAX_CONNECTIONS = 200


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
class _Attempt:
    """Filled in by the trace hook: whether the connection the request went over was taken from the pool."""

    reused: bool = False


async def _on_reuse(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
    context.trace_request_ctx.reused = True


_TRACE = aiohttp.TraceConfig()
_TRACE.on_connection_reuseconn.append(_on_reuse)
_TRACE.freeze()


@dataclass
class ReplicaClient:
    """One per event loop (the session is opened on first use, inside it); ``post`` may run concurrently."""

    timeout_s: float = 60.0
    idle_for_s: float = IDLE_FOR_S
    _session: aiohttp.ClientSession | None = None
    _urls: dict[tuple[str, str], URL] = field(default_factory=dict)

    async def post(self, address: str, path: str, body: bytes, content_type: str) -> Answer:
        """POST ``body`` to ``http://{address}{path}`` and return the answer (raises Unreachable, Broken)."""
        session = self._session if self._session is not None and not self._session.closed else self._open()
        url = self._urls.get((address, path))
        if url is None:
            url = self._urls[(address, path)] = URL(f"http://{address}{path}")
        headers = {"content-type": content_type}
        while True:
            attempt = _Attempt()
            try:
                async with session.post(url, data=body, headers=headers, trace_request_ctx=attempt) as response:
                    try:
                        answer = await response.read()
                    except (aiohttp.ClientError, OSError) as exc:
                        raise Broken(f"replica {address} failed while answering: {type(exc).__name__}: {exc}") from exc
                    return Answer(response.status, response.headers.get("content-type", "application/json"), answer)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt.reused:
                    continue  # a stale pooled connection: the replica had closed it; write it again
                if isinstance(exc, aiohttp.ServerDisconnectedError):
                    raise Broken(f"replica {address} closed the connection without answering") from exc
                raise Broken(f"replica {address} failed while answering: {type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                raise Broken(f"replica {address} did not answer within {self.timeout_s:.0f} s") from exc
            except aiohttp.ClientError as exc:  # a malformed answer
                raise Broken(f"replica {address} failed while answering: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=self.idle_for_s),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, connect=CONNECT_TIMEOUT_S),
            trace_configs=[_TRACE],
            auto_decompress=False,  # the answer's bytes pass through untouched
            skip_auto_headers=("Accept-Encoding", "User-Agent"),  # nothing asks the replica to compress
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session
