"""Artifact store in a local folder: uploads stream through the control plane into write-once files."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from control_room.storage.base import (
    ArtifactExists,
    ArtifactMissing,
    ArtifactStore,
    ChecksumMismatch,
    SizeMismatch,
    StorageError,
    UploadTarget,
    check_key,
)

# Received chunks are gathered to about this size before one write in a worker thread.
_WRITE_BUFFER_BYTES = 1 << 20
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class LocalArtifactStore(ArtifactStore):
    """Artifacts as read-only files under ``root``, one file per key."""

    kind = "local"

    def __init__(self, root: Path, *, upload_url_expiry_seconds: int = 900) -> None:
        self.root = root.expanduser().resolve()
        self.upload_url_expiry_seconds = upload_url_expiry_seconds

    def path(self, key: str) -> Path:
        """The file holding the key; ValueError when the key would leave the root folder."""
        check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"key {key!r} resolves outside the artifact folder {self.root}")
        return path

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def _upload_target(
        self, key: str, *, size: int, sha256: str, content_type: str, local_put_url: str
    ) -> UploadTarget:
        self.path(key)
        return UploadTarget(
            url=local_put_url,
            method="PUT",
            headers={"Content-Type": content_type, "Content-Length": str(size)},
            expires_at=datetime.now(UTC) + timedelta(seconds=self.upload_url_expiry_seconds),
        )

    async def _receive(self, key: str, chunks: AsyncIterator[bytes], *, size: int, sha256: str) -> None:
        final = self.path(key)
        if final.exists():
            raise ArtifactExists(key)
        # Blocking file calls go to a thread so a large upload never stalls the event loop.
        opening = asyncio.ensure_future(asyncio.to_thread(self._open_temp, final))
        try:
            temp, handle = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Cancelled while the thread creates the temp file: it still does, so remove it before giving up.
            with contextlib.suppress(Exception):
                temp, handle = await opening
                handle.close()
                temp.unlink(missing_ok=True)
            raise
        try:
            digest = hashlib.sha256()
            received = 0
            buffer = bytearray()
            async for chunk in chunks:
                received += len(chunk)
                if received > size:
                    raise SizeMismatch(key, expected=size, actual=received, more=True)
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= _WRITE_BUFFER_BYTES:
                    await asyncio.to_thread(handle.write, bytes(buffer))
                    buffer.clear()
            if received < size:
                raise SizeMismatch(key, expected=size, actual=received)
            actual_sha = digest.hexdigest()
            if actual_sha != sha256:
                raise ChecksumMismatch(key, expected=sha256, actual=actual_sha)
            await asyncio.to_thread(self._commit, key, handle, bytes(buffer), temp, final)
        except OSError as exc:
            raise StorageError(
                f"cannot write the upload of {key!r} under {self.root} ({exc.strerror}); "
                "check free disk space and permissions, then re-send the file"
            ) from exc
        finally:
            # Runs on every outcome, cancellation included: the temp file never outlives the call.
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def _open_temp(self, final: Path) -> tuple[Path, BinaryIO]:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
        except OSError as exc:
            raise StorageError(
                f"cannot create a temporary file for {final} ({exc.strerror}); "
                f"check that {self.root} is writable and that no file sits where a folder is needed"
            ) from exc
        return Path(name), os.fdopen(fd, "wb")

    @staticmethod
    def _commit(key: str, handle: BinaryIO, tail: bytes, temp: Path, final: Path) -> None:
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.chmod(temp, _READ_ONLY)
        try:
            # link() fails when the name exists, unlike rename(): a racing second upload cannot replace the first.
            os.link(temp, final)
        except FileExistsError:
            raise ArtifactExists(key) from None
        except OSError as exc:
            raise StorageError(
                f"cannot move the verified upload of {key!r} into place at {final} ({exc.strerror}); "
                "the artifact folder must be on a local file system that supports hard links"
            ) from exc
        _fsync_folder(final.parent)

    def _put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> None:
        final = self.path(key)
        actual_sha = hashlib.sha256(data).hexdigest()
        if actual_sha != sha256:
            raise ChecksumMismatch(key, expected=sha256, actual=actual_sha)
        if final.exists():
            raise ArtifactExists(key)
        temp, handle = self._open_temp(final)
        try:
            self._commit(key, handle, data, temp, final)
        except OSError as exc:
            raise StorageError(
                f"cannot write {key!r} under {self.root} ({exc.strerror}); check free disk space and permissions"
            ) from exc
        finally:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        path = self.path(key)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise ArtifactMissing(key, str(path)) from None

    def _iter_range(self, key: str, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        return _read_range(self.path(key), start, stop, chunk_size)

    def delete_pending(self, key: str) -> None:
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_range(path: Path, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
    with path.open("rb") as stored:
        stored.seek(start)
        remaining = stop - start
        while remaining > 0:
            block = stored.read(min(chunk_size, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
