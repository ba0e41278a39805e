"""The agent's HTTP client of the executor contract: one ``httpx.Client`` per process, grouped by resource.

Every request carries a correlation id (``X-Correlation-ID``; retries of one call share it). Network
errors and 5xx answers are retried with exponential backoff and full jitter; nothing else is, because a
4xx will not change by asking again. 4xx answers become typed errors: a 409 on a lease operation is
``LeaseLost`` (stop working on the task), 401 ``Unauthorized``, 403 ``Forbidden``, 404 ``NotFound``,
other 409s ``Conflict`` and 400/422 ``InvalidRequest`` naming the offending ``field``.

The bearer token is only ever sent to the control plane's own origin: artifact bytes may go to a
presigned S3 URL, which must not receive it (and would reject a second credential anyway).
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from executor_agent import __version__
from executor_agent.generated.contract import (
    ArtifactPublic,
    ClaimReply,
    EventBatchReply,
    ExecutorHeartbeatReply,
    ExecutorPublic,
    FinalizeBatchItem,
    FinalizeBatchReply,
    FinalizeReply,
    HealthPublic,
    LeaseBatchItem,
    LeaseBatchReply,
    ReleaseReply,
    TaskAssignment,
    TaskHeartbeatReply,
    UploadTicket,
)

API_PREFIX = "/api/v1"
CORRELATION_HEADER = "X-Correlation-ID"
_OPERATION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_UPLOAD_CHUNK_BYTES = 1 << 20
ModelT = TypeVar("ModelT", bound=BaseModel)


class ClientError(Exception):
    """The control plane (or the artifact store) refused a request; retrying the same request will not help."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        title: str = "",
        field: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = message
        self.field = field
        self.correlation_id = correlation_id


class Unauthorized(ClientError):
    """401: the executor token is unknown, expired or revoked."""


class Forbidden(ClientError):
    """403: the token is valid but may not do this (e.g. a user token, or a revoked executor)."""


class NotFound(ClientError):
    """404: no such task, upload or operation."""


class Conflict(ClientError):
    """409 outside lease fencing (e.g. an artifact name already used with other content); 412 from a store."""


class LeaseLost(Conflict):
    """409 on a lease operation: the lease expired, was reaped or was finalized; stop the task's work."""


class InvalidRequest(ClientError):
    """400/422: the request was malformed or invalid; ``field`` names the offending input."""


class ControlPlaneUnavailable(Exception):
    """Network errors or 5xx answers on every try; the caller keeps its work and tries again later."""

    def __init__(self, message: str, *, correlation_id: str) -> None:
        super().__init__(message)
        self.correlation_id = correlation_id


class UnexpectedResponse(ClientError):
    """A 2xx answer whose body is not what the contract says (a proxy in the way, or a version skew)."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


class _ControlPlaneBearer(httpx.Auth):
    """Adds the executor token to requests for the control plane's origin only."""

    def __init__(self, token: str, base_url: httpx.URL) -> None:
        self._header = f"Bearer {token}"
        self._origin = _origin(base_url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(request.url) == self._origin:
            request.headers["Authorization"] = self._header
        yield request


def _stamp_correlation_id(request: httpx.Request) -> None:
    # Calls made through ExecutorClient set one id per logical call; anything else still gets one.
    if CORRELATION_HEADER not in request.headers:
        request.headers[CORRELATION_HEADER] = uuid.uuid4().hex


def _problem(response: httpx.Response) -> tuple[str, str, str | None]:
    """(title, detail, field) of an error answer, problem+json or not (S3 answers in XML)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        code = re.search(r"<Code>([^<]+)</Code>", text)
        message = re.search(r"<Message>([^<]+)</Message>", text)
        if code:
            return code.group(1), f"{code.group(1)}: {message.group(1) if message else text[:300]}", None
        return response.reason_phrase, text[:500] or response.reason_phrase, None
    if isinstance(body, dict):
        title = str(body.get("title") or response.reason_phrase)
        detail = str(body.get("detail") or title)
        field = body.get("field")
        return title, detail, str(field) if field else None
    return response.reason_phrase, str(body)[:500], None


class ExecutorClient:
    """The contract over HTTP: ``client.executors``, ``client.tasks``, ``client.artifacts``; one per process."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        retry_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_attempts = retry_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._timeout_s = timeout_s
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._rng_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_ControlPlaneBearer(token, httpx.URL(self.base_url)),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            headers={"User-Agent": f"lakehouse-executor/{__version__}"},
            event_hooks={"request": [_stamp_correlation_id]},
            transport=transport,
            trust_env=False,  # never route the control plane or artifact bytes through an ambient proxy
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self.executors = ExecutorsResource(self)
        self.tasks = TasksResource(self)
        self.artifacts = ArtifactsResource(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def health(self) -> HealthPublic:
        """``GET /health``: reachable, database up and migrated."""
        return self._parse(HealthPublic, self.request("GET", "/health", retries=1))

    # Core ------------------------------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))
        with self._rng_lock:
            return self._rng.uniform(0, ceiling)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        lease_op: bool = False,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        content: Callable[[], Iterator[bytes]] | None = None,
        retries: int | None = None,
    ) -> httpx.Response:
        """Send one logical call, retrying network errors and 5xx; returns a 2xx response or raises.

        ``path_or_url`` is a path under /api/v1, or an absolute URL (presigned upload targets).
        ``content`` is a factory so every try re-reads the bytes from the start.
        """
        url = path_or_url if "://" in path_or_url else API_PREFIX + path_or_url
        correlation_id = uuid.uuid4().hex
        call_headers = {**(headers or {}), CORRELATION_HEADER: correlation_id}
        attempts = retries or self.retry_attempts
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)) if timeout_s else None
        last_error = ""
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(
                    method,
                    url,
                    json=json,
                    content=content() if content is not None else None,
                    headers=call_headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise self._error(response, lease_op=lease_op, correlation_id=correlation_id)
                last_error = f"HTTP {response.status_code}: {_problem(response)[1][:300]}"
            if attempt < attempts:
                self._sleep(self.backoff_delay(attempt))
        raise ControlPlaneUnavailable(
            f"{method} {url} failed {attempts} times (last: {last_error}); correlation id {correlation_id}",
            correlation_id=correlation_id,
        )

    @staticmethod
    def _error(response: httpx.Response, *, lease_op: bool, correlation_id: str) -> ClientError:
        title, detail, field = _problem(response)
        status = response.status_code
        kind: type[ClientError]
        if status == 401:
            kind = Unauthorized
        elif status == 403:
            kind = Forbidden
        elif status == 404:
            kind = NotFound
        elif status == 409:
            kind = LeaseLost if lease_op or title == "Lease lost" else Conflict
        elif status == 412:
            kind = Conflict
        else:
            kind = InvalidRequest
        where = f" (field {field})" if field else ""
        return kind(
            f"{response.request.method} {response.request.url.path}: {status} {title}: {detail}{where}",
            status=status,
            title=title,
            field=field,
            correlation_id=correlation_id,
        )

    @staticmethod
    def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url.path}: the answer is not a {model.__name__}: "
                f"{str(exc)[:300]}",
                status=response.status_code,
                correlation_id=response.request.headers.get(CORRELATION_HEADER),
            ) from exc


class ExecutorsResource:
    """``/executors``: register and executor heartbeats."""

    def __init__(self, client: ExecutorClient) -> None:
        self._client = client

    def register(
        self,
        *,
        engines: Sequence[str],
        labels: Sequence[str],
        max_concurrency: int,
        hostname: str,
        metadata: Mapping[str, Any] | None = None,
        retries: int | None = None,
    ) -> ExecutorPublic:
        body = {
            "engines": list(engines),
            "labels": list(labels),
            "max_concurrency": max_concurrency,
            "version": __version__,
            "hostname": hostname[:255],
            "metadata": dict(metadata or {}),
        }
        response = self._client.request("POST", "/executors/register", json=body, retries=retries)
        return self._client._parse(ExecutorPublic, response)

    def heartbeat(self, running_task_ids: Sequence[uuid.UUID]) -> ExecutorHeartbeatReply:
        body = {"running_task_ids": [str(task_id) for task_id in running_task_ids]}
        return self._client._parse(
            ExecutorHeartbeatReply, self._client.request("POST", "/executors/heartbeat", json=body)
        )


class TasksResource:
    """``/tasks``: claim, lease heartbeats, events, finalize, release and reports."""

    def __init__(self, client: ExecutorClient) -> None:
        self._client = client

    def _lease_op(self, path: str, body: Mapping[str, Any], reply: type[ModelT]) -> ModelT:
        """POST an operation under a lease (a 409 becomes LeaseLost) and parse its reply."""
        return self._client._parse(reply, self._client.request("POST", path, json=body, lease_op=True))

    def claim(
        self,
        *,
        max_tasks: int,
        wait_s: float = 0.0,
        engines: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        claim_id: uuid.UUID | None = None,
    ) -> list[TaskAssignment]:
        """Claim up to max_tasks. Pass the same ``claim_id`` when retrying a claim whose reply was lost:
        the control plane answers with the tasks and leases it handed out then, not new ones."""
        body: dict[str, Any] = {"max_tasks": max_tasks, "wait_s": wait_s, "claim_id": str(claim_id or uuid.uuid4())}
        if engines is not None:
            body["engines"] = list(engines)
        if labels is not None:
            body["labels"] = list(labels)
        # The server may hold the request for wait_s: the read timeout must outlast it.
        response = self._client.request("POST", "/tasks/claim", json=body, timeout_s=self._client._timeout_s + wait_s)
        return self._client._parse(ClaimReply, response).tasks

    def heartbeat(self, task_id: uuid.UUID, lease_token: uuid.UUID) -> TaskHeartbeatReply:
        return self._lease_op(f"/tasks/{task_id}/heartbeat", {"lease_token": str(lease_token)}, TaskHeartbeatReply)

    def heartbeat_many(self, leases: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> list[LeaseBatchItem]:
        """Extend many leases in one call; an item with ``ok`` false lost its lease."""
        body = {"items": [{"task_id": str(t), "lease_token": str(lease)} for t, lease in leases]}
        return self._lease_op("/tasks/heartbeat", body, LeaseBatchReply).items

    def append_events(
        self, task_id: uuid.UUID, lease_token: uuid.UUID, events: Sequence[Mapping[str, Any]]
    ) -> EventBatchReply:
        body = {"lease_token": str(lease_token), "events": list(events)}
        return self._lease_op(f"/tasks/{task_id}/events", body, EventBatchReply)

    def finalize(
        self,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        outcome: str,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> FinalizeReply:
        body = {"lease_token": str(lease_token), "outcome": outcome, "result": result, "error": error}
        return self._lease_op(f"/tasks/{task_id}/finalize", body, FinalizeReply)

    def finalize_many(self, items: Sequence[Mapping[str, Any]]) -> list[FinalizeBatchItem]:
        """Finalize many tasks; each item (task_id, lease_token, outcome, result, error) succeeds on its own."""
        return self._lease_op("/tasks/finalize", {"items": list(items)}, FinalizeBatchReply).items

    def policies(self, task_id: uuid.UUID, lease_token: uuid.UUID) -> dict[str, Any]:
        """The access policies the task is held to (``POST /tasks/{id}/policies``): its principal, groups and
        the datasets the policies restrict for it."""
        response = self._client.request(
            "POST", f"/tasks/{task_id}/policies", json={"lease_token": str(lease_token)}, lease_op=True
        )
        reply = response.json()
        if not isinstance(reply, dict) or not isinstance(reply.get("datasets"), list):
            raise UnexpectedResponse(
                "the control plane's task policies are not an object with a datasets list",
                status=response.status_code,
                correlation_id=response.request.headers.get(CORRELATION_HEADER, ""),
            )
        return reply

    def release(self, task_id: uuid.UUID, lease_token: uuid.UUID, *, reason: str | None = None) -> ReleaseReply:
        body = {"lease_token": str(lease_token), "reason": reason}
        return self._lease_op(f"/tasks/{task_id}/release", body, ReleaseReply)

    def report(
        self,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        operation: str,
        payload: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """``POST /tasks/{task_id}/{operation}`` with ``{"lease_token": ..., **payload}`` (lineage, queries, ...);
        ``timeout_s`` for an operation that works longer than one ordinary request (a catalog sync)."""
        if not _OPERATION_NAME.match(operation):
            raise ValueError(f"operation must be a lower-case name such as 'lineage', got {operation!r}")
        if "lease_token" in payload:
            raise ValueError("payload must not carry lease_token; the agent adds the attempt's own")
        body = {"lease_token": str(lease_token), **payload}
        response = self._client.request(
            "POST", f"/tasks/{task_id}/{operation}", json=body, lease_op=True, timeout_s=timeout_s
        )
        if not response.content:
            return {}
        try:
            reply = response.json()
        except ValueError:
            return {"status": response.status_code}
        return reply if isinstance(reply, dict) else {"reply": reply}


class ArtifactsResource:
    """Artifacts: initiate (size and SHA-256 declared), send the bytes, complete (verified by the server)."""

    def __init__(self, client: ExecutorClient) -> None:
        self._client = client

    def initiate(
        self,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        name: str,
        size_bytes: int,
        sha256: str,
        content_type: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> UploadTicket:
        body = {
            "lease_token": str(lease_token),
            "name": name,
            "size_bytes": size_bytes,
            "sha256": sha256,
            "content_type": content_type,
            "metadata": dict(metadata or {}),
        }
        response = self._client.request("POST", f"/tasks/{task_id}/artifacts", json=body)
        return self._client._parse(UploadTicket, response)

    def send_bytes(self, ticket: UploadTicket, path: Path) -> None:
        """Send the file to the ticket's URL with its headers (the control plane, or a presigned S3 URL)."""
        if ticket.upload_url is None:
            raise ValueError("this ticket has nothing to upload: the artifact is already stored")

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while block := handle.read(_UPLOAD_CHUNK_BYTES):
                    yield block

        # Content-Length comes with the ticket's headers, so the body streams without chunked encoding.
        headers = dict(ticket.headers)
        headers.setdefault("Content-Length", str(path.stat().st_size))
        self._client.request(
            ticket.method or "PUT",
            ticket.upload_url,
            headers=headers,
            content=chunks,
            timeout_s=max(self._client._timeout_s, 300.0),
        )

    def fetch(
        self,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        *,
        task_key: str,
        name: str,
        dest: Path,
        run_id: str | None = None,
    ) -> Path:
        """Download an earlier task's artifact to ``dest``, verifying its SHA-256; returns ``dest``."""
        body: dict[str, Any] = {"lease_token": str(lease_token), "task_key": task_key, "name": name}
        if run_id is not None:
            body["run_id"] = run_id
        response = self._client.request(
            "POST", f"/tasks/{task_id}/artifacts/fetch", json=body, timeout_s=max(self._client._timeout_s, 300.0)
        )
        expected = response.headers.get("X-Artifact-Sha256", "")
        digest = hashlib.sha256(response.content).hexdigest()
        if digest != expected:
            raise UnexpectedResponse(
                f"artifact {name!r} of task {task_key!r} arrived corrupted (sha256 {digest}, expected {expected})",
                status=response.status_code,
                correlation_id=response.request.headers.get(CORRELATION_HEADER),
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        partial.write_bytes(response.content)
        partial.replace(dest)
        return dest

    def complete(self, task_id: uuid.UUID, upload_id: uuid.UUID, lease_token: uuid.UUID) -> ArtifactPublic:
        response = self._client.request(
            "POST", f"/tasks/{task_id}/artifacts/{upload_id}/complete", json={"lease_token": str(lease_token)}
        )
        return self._client._parse(ArtifactPublic, response)
