"""The local folder artifact store: write-once, SHA-256 checked uploads on a real file system."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from control_room.config import Settings
from control_room.storage import (
    ArtifactExists,
    ArtifactMissing,
    ChecksumMismatch,
    LocalArtifactStore,
    SizeMismatch,
    StorageError,
    artifact_key,
    get_store,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def upload(store: LocalArtifactStore, key: str, parts: Iterable[bytes], *, size: int, sha256: str) -> None:
    asyncio.run(store.receive(key, stream(parts), size=size, sha256=sha256))


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def key() -> str:
    return artifact_key(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, "reports/out.csv")


PAYLOAD = b"".join(f"row {i},{i * i}\n".encode() for i in range(50_000))  # ~700 KB, several chunks


def chunks_of(data: bytes, size: int = 65_536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_round_trip(store: LocalArtifactStore, key: str) -> None:
    upload(store, key, chunks_of(PAYLOAD), size=len(PAYLOAD), sha256=sha(PAYLOAD))

    path = store.path(key)
    assert path.read_bytes() == PAYLOAD
    assert store.exists(key)
    assert store.size(key) == len(PAYLOAD)
    assert b"".join(store.iter_bytes(key)) == PAYLOAD
    assert store.uri(key) == path.as_uri()
    assert store.uri(key).startswith("file:///")
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert files_under(store.root) == [path]  # no temp file left beside it
    result = store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD))
    assert result.ok, result.message
    assert result.actual_sha256 == sha(PAYLOAD)
    assert result.actual_size == len(PAYLOAD)


def test_empty_artifact(store: LocalArtifactStore, key: str) -> None:
    upload(store, key, [], size=0, sha256=sha(b""))
    assert store.size(key) == 0
    assert list(store.iter_bytes(key)) == []
    assert store.verify(key, size=0, sha256=sha(b"")).ok


def test_wrong_sha256_is_rejected_and_nothing_is_left(store: LocalArtifactStore, key: str) -> None:
    wrong = sha(b"something else")
    with pytest.raises(ChecksumMismatch) as caught:
        upload(store, key, chunks_of(PAYLOAD), size=len(PAYLOAD), sha256=wrong)

    assert caught.value.expected == wrong
    assert caught.value.actual == sha(PAYLOAD)
    assert key in str(caught.value)
    assert not store.exists(key)
    assert files_under(store.root) == []


def test_too_many_bytes_stop_the_upload_early(store: LocalArtifactStore, key: str) -> None:
    consumed: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(1_000):
            consumed.append(index)
            yield b"x" * 1024

    with pytest.raises(SizeMismatch) as caught:
        asyncio.run(store.receive(key, endless(), size=4096, sha256=sha(b"x" * 4096)))

    assert caught.value.expected == 4096
    assert caught.value.actual > 4096
    assert len(consumed) == 5  # stopped at the first chunk past the declared size
    assert files_under(store.root) == []


def test_too_few_bytes_are_rejected(store: LocalArtifactStore, key: str) -> None:
    with pytest.raises(SizeMismatch) as caught:
        upload(store, key, chunks_of(PAYLOAD[:-1]), size=len(PAYLOAD), sha256=sha(PAYLOAD))

    assert (caught.value.expected, caught.value.actual) == (len(PAYLOAD), len(PAYLOAD) - 1)
    assert files_under(store.root) == []


def test_second_upload_of_a_key_is_refused_and_the_first_kept(store: LocalArtifactStore, key: str) -> None:
    upload(store, key, [PAYLOAD], size=len(PAYLOAD), sha256=sha(PAYLOAD))
    other = b"a different artifact"

    with pytest.raises(ArtifactExists):
        upload(store, key, [other], size=len(other), sha256=sha(other))

    assert store.path(key).read_bytes() == PAYLOAD
    assert files_under(store.root) == [store.path(key)]


def test_concurrent_uploads_of_one_key_store_exactly_one(store: LocalArtifactStore, key: str) -> None:
    first, second = b"first" * 1000, b"second" * 1000

    async def both() -> list[BaseException | None]:
        return await asyncio.gather(
            store.receive(key, stream(chunks_of(first, 512)), size=len(first), sha256=sha(first)),
            store.receive(key, stream(chunks_of(second, 512)), size=len(second), sha256=sha(second)),
            return_exceptions=True,
        )

    outcomes = asyncio.run(both())

    assert sum(outcome is None for outcome in outcomes) == 1
    assert sum(isinstance(outcome, ArtifactExists) for outcome in outcomes) == 1
    assert store.path(key).read_bytes() in (first, second)
    assert files_under(store.root) == [store.path(key)]


def test_cancelled_upload_leaves_nothing(store: LocalArtifactStore, key: str) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield b"partial"
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    async def cancel_mid_upload() -> None:
        task = asyncio.create_task(store.receive(key, stalled(), size=100, sha256=sha(b"x")))
        deadline = asyncio.get_running_loop().time() + 10
        while not any(store.root.rglob("*.partial")):
            assert asyncio.get_running_loop().time() < deadline, "upload never started"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_upload())
    assert files_under(store.root) == []


def test_verify_detects_a_corrupted_file(store: LocalArtifactStore, key: str) -> None:
    upload(store, key, [PAYLOAD], size=len(PAYLOAD), sha256=sha(PAYLOAD))
    path = store.path(key)
    os.chmod(path, 0o600)
    corrupted = bytearray(path.read_bytes())
    corrupted[1234] ^= 0x01
    path.write_bytes(bytes(corrupted))

    result = store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD))

    assert not result.ok
    assert result.actual_sha256 == sha(bytes(corrupted))
    assert result.actual_size == len(PAYLOAD)
    assert result.expected_sha256 == sha(PAYLOAD)
    assert key in result.message


def test_verify_reports_a_size_change_and_a_missing_file(store: LocalArtifactStore, key: str) -> None:
    upload(store, key, [PAYLOAD], size=len(PAYLOAD), sha256=sha(PAYLOAD))
    path = store.path(key)
    os.chmod(path, 0o600)
    with path.open("ab") as appended:
        appended.write(b"tail")

    grown = store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD))
    assert (grown.ok, grown.actual_size, grown.actual_sha256) == (False, len(PAYLOAD) + 4, None)

    missing_key = key + ".missing"
    missing = store.verify(missing_key, size=1, sha256=sha(b"x"))
    assert (missing.ok, missing.actual_size, missing.actual_sha256) == (False, None, None)
    assert not store.exists(missing_key)
    with pytest.raises(ArtifactMissing):
        store.size(missing_key)
    with pytest.raises(ArtifactMissing):
        store.iter_bytes(missing_key)


@pytest.mark.parametrize(
    "bad_key",
    [
        "../escape.txt",
        "p/r/t/1/../../../../../etc/passwd",
        "/etc/passwd",
        "p/r/t/1/a\\..\\b",
        "p/r/t/1/nul\x00byte",
        "p//r",
        "./p",
        "",
    ],
)
def test_keys_cannot_escape_the_root(store: LocalArtifactStore, bad_key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        store.path(bad_key)
    with pytest.raises(ValueError, match="key"):
        upload(store, bad_key, [b"x"], size=1, sha256=sha(b"x"))
    assert not store.root.exists() or files_under(store.root) == []


def test_symlinked_folder_cannot_lead_outside_the_root(store: LocalArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "p").symlink_to(outside)

    with pytest.raises(ValueError, match="outside the artifact folder"):
        upload(store, "p/leak.txt", [b"x"], size=1, sha256=sha(b"x"))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("name", ("p", "r", "t", 1, "../x")),
        ("name", ("p", "r", "t", 1, "a/../../x")),
        ("name", ("p", "r", "t", 1, "/abs")),
        ("name", ("p", "r", "t", 1, "C:/abs")),
        ("name", ("p", "r", "t", 1, "a\\b")),
        ("name", ("p", "r", "t", 1, "a\x00b")),
        ("name", ("p", "r", "t", 1, "x" * 513)),
        ("name", ("p", "r", "t", 1, "")),
        ("project_id", ("..", "r", "t", 1, "x")),
        ("run_id", ("p", "a/b", "t", 1, "x")),
        ("task_id", ("p", "r", "", 1, "x")),
        ("attempt", ("p", "r", "t", -1, "x")),
    ],
)
def test_artifact_key_rejects_unsafe_parts(field: str, args: tuple[str, str, str, int, str]) -> None:
    with pytest.raises(ValueError, match=field):
        artifact_key(*args)


def test_artifact_key_layout() -> None:
    project, run, task = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert artifact_key(project, run, task, 2, "model/weights.bin") == f"{project}/{run}/{task}/2/model/weights.bin"
    assert artifact_key("p", "r", "t", 0, "x" * 512).endswith("/0/" + "x" * 512)
    assert artifact_key("p", "r", "t", 0, "v1..v2.diff").endswith("/v1..v2.diff")  # dots inside a name are fine


def test_range_reads(store: LocalArtifactStore, key: str) -> None:
    data = bytes(range(256)) * 1000
    upload(store, key, [data], size=len(data), sha256=sha(data))

    assert b"".join(store.iter_bytes(key, start=10, end=20)) == data[10:20]
    assert b"".join(store.iter_bytes(key, start=1000, chunk_size=7)) == data[1000:]
    assert all(len(block) <= 7 for block in store.iter_bytes(key, start=0, end=100, chunk_size=7))
    assert b"".join(store.iter_bytes(key, start=len(data) - 5, end=len(data) + 100)) == data[-5:]
    assert b"".join(store.iter_bytes(key, start=50, end=50)) == b""
    assert b"".join(store.iter_bytes(key, start=len(data) + 10)) == b""
    with pytest.raises(ValueError, match="before start"):
        store.iter_bytes(key, start=20, end=10)
    with pytest.raises(ValueError, match="start"):
        store.iter_bytes(key, start=-1)


def test_upload_target_points_at_the_control_plane(store: LocalArtifactStore, key: str) -> None:
    target = store.upload_target(
        key, size=42, sha256=sha(b"x"), content_type="text/csv", local_put_url="http://127.0.0.1:3000/upload/abc"
    )
    assert target.url == "http://127.0.0.1:3000/upload/abc"
    assert target.method == "PUT"
    assert target.headers == {"Content-Type": "text/csv", "Content-Length": "42"}
    assert target.expires_at.tzinfo is not None
    with pytest.raises(ValueError, match="sha256"):
        store.upload_target(key, size=1, sha256="nothex", content_type="text/csv", local_put_url="http://x")


def test_delete_pending_removes_a_rejected_upload(store: LocalArtifactStore, key: str) -> None:
    upload(store, key, [b"abc"], size=3, sha256=sha(b"abc"))
    store.delete_pending(key)
    assert not store.exists(key)
    store.delete_pending(key)  # idempotent


def test_get_store_builds_one_local_store_per_folder(tmp_path: Path) -> None:
    settings = Settings(artifact_store="local", data_dir=tmp_path / "data")
    store = get_store(settings)
    assert isinstance(store, LocalArtifactStore)
    assert store.kind == "local"
    assert store.root == (tmp_path / "data" / "artifacts").resolve()
    assert get_store(Settings(artifact_store="local", data_dir=tmp_path / "data")) is store
    assert get_store(Settings(artifact_store="local", artifacts_dir=tmp_path / "elsewhere")) is not store


def test_unwritable_root_gives_an_actionable_error(tmp_path: Path, key: str) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact folder should be")
    store = LocalArtifactStore(blocker)
    with pytest.raises(StorageError, match="writable"):
        upload(store, key, [b"x"], size=1, sha256=sha(b"x"))


def test_bytes_the_control_plane_writes_are_checked_and_write_once(store: LocalArtifactStore, key: str) -> None:
    """put_bytes (the retention's Parquet archives): a wrong SHA-256 stores nothing; a key is written once."""
    data = b"parquet bytes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ChecksumMismatch):
        store.put_bytes(key, data, sha256="0" * 64, content_type="application/vnd.apache.parquet")
    assert not store.exists(key) and not list(store.root.rglob("*.partial"))
    store.put_bytes(key, data, sha256=digest, content_type="application/vnd.apache.parquet")
    with pytest.raises(ArtifactExists):
        store.put_bytes(key, b"other", sha256=hashlib.sha256(b"other").hexdigest(), content_type="text/plain")
    assert store.verify(key, size=len(data), sha256=digest).ok
