"""The artifact store interface: write-once artifact bytes, verified by SHA-256, behind one ABC."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

MAX_NAME_LENGTH = 512
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class StorageError(Exception):
    """An artifact store operation failed; the message says on which object and what to do."""


class ChecksumMismatch(StorageError):
    """The bytes received or stored do not hash to the declared SHA-256."""

    def __init__(self, key: str, *, expected: str, actual: str) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"artifact {key!r}: SHA-256 of the received bytes is {actual}, but {expected} was declared; "
            "the upload was discarded, re-send the file or declare its real checksum"
        )


class SizeMismatch(StorageError):
    """The number of bytes received or stored differs from the declared size."""

    def __init__(self, key: str, *, expected: int, actual: int, more: bool = False) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        received = f"more than {expected}" if more else str(actual)
        super().__init__(
            f"artifact {key!r}: {received} bytes received, but {expected} were declared; "
            "the upload was discarded, re-send the whole file or declare its real size"
        )


class ArtifactExists(StorageError):
    """Artifacts are write-once: the key already holds bytes."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"artifact {key!r} already exists and artifacts are write-once; upload under a new name or attempt"
        )


class ArtifactMissing(StorageError):
    """No bytes are stored under the key."""

    def __init__(self, key: str, where: str) -> None:
        self.key = key
        super().__init__(f"artifact {key!r} has no stored bytes at {where}; it was never uploaded or was removed")


@dataclass(frozen=True)
class UploadTarget:
    """Where and how an executor sends an artifact's bytes."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing stored bytes against the declared size and SHA-256."""

    ok: bool
    expected_sha256: str
    actual_sha256: str | None
    expected_size: int
    actual_size: int | None
    message: str


class ArtifactStore(ABC):
    """Write-once artifact bytes addressed by keys from :func:`artifact_key`.

    The public methods check the declared size, SHA-256 and byte range once, for every store; a store
    implements the ``_`` methods they call with the checked values.
    """

    kind: str

    @abstractmethod
    def uri(self, key: str) -> str:
        """A URI naming where the key's bytes live (``file://`` or ``s3://``)."""

    def upload_target(self, key: str, *, size: int, sha256: str, content_type: str, local_put_url: str) -> UploadTarget:
        """The request an executor makes to upload the key's bytes."""
        expected_sha = check_sha256(sha256)
        return self._upload_target(
            key, size=check_size(size), sha256=expected_sha, content_type=content_type, local_put_url=local_put_url
        )

    @abstractmethod
    def _upload_target(
        self, key: str, *, size: int, sha256: str, content_type: str, local_put_url: str
    ) -> UploadTarget:
        """``upload_target`` with the size and SHA-256 checked (the SHA-256 normalized)."""

    async def receive(self, key: str, chunks: AsyncIterator[bytes], *, size: int, sha256: str) -> None:
        """Store bytes streamed through the control plane, checking size and SHA-256 before they appear."""
        expected_sha = check_sha256(sha256)
        await self._receive(key, chunks, size=check_size(size), sha256=expected_sha)

    @abstractmethod
    async def _receive(self, key: str, chunks: AsyncIterator[bytes], *, size: int, sha256: str) -> None:
        """``receive`` with the declared size and SHA-256 checked (the SHA-256 normalized)."""

    def verify(self, key: str, *, size: int, sha256: str) -> VerifyResult:
        """Re-read the stored bytes and compare them with the declared size and SHA-256.

        The hash is computed from the bytes themselves, never taken from stored metadata: metadata
        is only what some client once claimed.
        """
        expected_sha = check_sha256(sha256)
        check_size(size)

        def result(ok: bool, actual_sha: str | None, actual_size: int | None, message: str) -> VerifyResult:
            return VerifyResult(
                ok=ok,
                expected_sha256=expected_sha,
                actual_sha256=actual_sha,
                expected_size=size,
                actual_size=actual_size,
                message=message,
            )

        try:
            actual_size = self.size(key)
        except ArtifactMissing:
            return result(False, None, None, f"artifact {key!r}: nothing stored at {self.uri(key)}")
        if actual_size != size:
            # Hashing a file of the wrong size cannot make it right; skip reading it.
            return result(False, None, actual_size, f"artifact {key!r}: {actual_size} bytes stored, {size} declared")
        digest = hashlib.sha256()
        for block in self.iter_bytes(key, chunk_size=1 << 20):
            digest.update(block)
        actual_sha = digest.hexdigest()
        if actual_sha != expected_sha:
            return result(
                False,
                actual_sha,
                actual_size,
                f"artifact {key!r}: stored bytes hash to {actual_sha}, but {expected_sha} was declared",
            )
        return result(True, actual_sha, actual_size, "size and SHA-256 match")

    def put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> None:
        """Store bytes the control plane itself produced (write-once, SHA-256 checked before they appear)."""
        self._put_bytes(key, data, sha256=check_sha256(sha256), content_type=content_type)

    @abstractmethod
    def _put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> None:
        """``put_bytes`` with the declared SHA-256 checked and normalized."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether bytes are stored under the key."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes of the stored object; raises ArtifactMissing."""

    def iter_bytes(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 1 << 16
    ) -> Iterator[bytes]:
        """The stored bytes in ``[start, end)`` (end clamped to the size); raises ArtifactMissing up front."""
        first, stop = check_range(start, end, self.size(key))
        return self._iter_range(key, first, stop, chunk_size)

    @abstractmethod
    def _iter_range(self, key: str, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        """The stored bytes in ``[start, stop)``, a range within the stored size."""

    @abstractmethod
    def delete_pending(self, key: str) -> None:
        """Remove bytes whose upload was rejected at completion; never call it for a completed artifact."""


def check_sha256(sha256: str) -> str:
    """The declared checksum as 64 lowercase hex digits; ValueError otherwise."""
    normalized = sha256.strip().lower()
    if not _SHA256_HEX.match(normalized):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return normalized


def check_size(size: int) -> int:
    """The declared size as a non-negative int; ValueError otherwise."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    return size


def check_key(key: str) -> str:
    """A store key made of plain relative segments; ValueError for anything that could escape the root."""
    _check_path_text("key", key, max_length=4 * MAX_NAME_LENGTH)
    return key


def check_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """``[start, end)`` validated and clamped to ``size``."""
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    stop = size if end is None else min(end, size)
    if end is not None and end < start:
        raise ValueError(f"range end {end} is before start {start}")
    return min(start, stop), stop


def _check_path_text(field: str, value: str, *, max_length: int) -> None:
    if not value:
        raise ValueError(f"{field} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{field} is {len(value)} characters long; at most {max_length} are allowed")
    if "\\" in value:
        raise ValueError(f"{field} {value!r} contains a backslash; use '/' between folders")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{field} {value!r} contains a NUL or control character")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{field} {value!r} is an absolute path; give a path relative to the run's artifacts")
    for segment in value.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"{field} {value!r} contains an empty, '.' or '..' path segment")


def artifact_key(project_id: UUID | str, run_id: UUID | str, task_id: UUID | str, attempt: int, name: str) -> str:
    """The store key ``<project>/<run>/<task>/<attempt>/<name>``; ValueError naming the field at fault.

    ``name`` may contain folders (``reports/summary.html``) but never leaves its attempt's folder.
    """
    segments: list[str] = []
    for field, value in (("project_id", project_id), ("run_id", run_id), ("task_id", task_id)):
        text = str(value)
        _check_path_text(field, text, max_length=MAX_NAME_LENGTH)
        if "/" in text:
            raise ValueError(f"{field} {text!r} must not contain '/'")
        segments.append(text)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be a non-negative integer, got {attempt!r}")
    segments.append(str(attempt))
    _check_path_text("name", name, max_length=MAX_NAME_LENGTH)
    segments.append(name)
    return "/".join(segments)
