"""The S3 artifact store against a real SeaweedFS: presigned uploads, server-side checksum checks, verify."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from pydantic import SecretStr

from control_room.config import Settings
from control_room.storage import (
    ArtifactExists,
    ArtifactMissing,
    S3ArtifactStore,
    StorageError,
    UploadTarget,
    artifact_key,
    get_store,
)
from tests.seaweedfs import SeaweedS3

PAYLOAD = b"".join(f"line {i}\n".encode() for i in range(100_000))  # ~890 KB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_settings(server: SeaweedS3, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "artifact_store": "s3",
        "s3_endpoint_url": server.endpoint_url,
        "s3_bucket": f"lh-test-{uuid.uuid4().hex[:12]}",
        "s3_prefix": "artifacts/",
        "s3_region": server.region,
        "s3_access_key_id": server.access_key_id,
        "s3_secret_access_key": SecretStr(server.secret_access_key),
        "upload_url_expiry_seconds": 300,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def raw_client(server: SeaweedS3, *, secret: str | None = None) -> Any:
    """A plain boto3 client, to act on the bucket the way something outside the store would."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=secret or server.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def put(target: UploadTarget, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.request(target.method, target.url, content=body, headers=headers or target.headers, timeout=30)


@pytest.fixture
def store(seaweedfs: SeaweedS3) -> S3ArtifactStore:
    built = get_store(s3_settings(seaweedfs))
    assert isinstance(built, S3ArtifactStore)
    return built


@pytest.fixture
def key() -> str:
    return artifact_key(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, "out/result.parquet")


def target_for(store: S3ArtifactStore, key: str, data: bytes) -> UploadTarget:
    return store.upload_target(
        key,
        size=len(data),
        sha256=sha(data),
        content_type="application/octet-stream",
        local_put_url="http://unused.invalid/upload",
    )


def test_presigned_put_round_trip(store: S3ArtifactStore, key: str) -> None:
    target = target_for(store, key, PAYLOAD)

    assert target.method == "PUT"
    signed = parse_qs(urlsplit(target.url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "x-amz-checksum-sha256", "if-none-match"} <= set(signed)
    assert target.headers["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(PAYLOAD).digest()).decode()
    assert target.headers["Content-Type"] == "application/octet-stream"
    response = put(target, PAYLOAD)
    assert response.status_code == 200, response.text

    assert store.exists(key)
    assert store.size(key) == len(PAYLOAD)
    assert store.uri(key) == f"s3://{store.bucket}/artifacts/{key}"
    result = store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD))
    assert result.ok, result.message
    assert (result.actual_sha256, result.actual_size) == (sha(PAYLOAD), len(PAYLOAD))
    assert b"".join(store.iter_bytes(key)) == PAYLOAD


def test_body_with_another_sha256_is_rejected_by_the_server(store: S3ArtifactStore, key: str) -> None:
    target = target_for(store, key, PAYLOAD)
    tampered = bytearray(PAYLOAD)
    tampered[500] ^= 0xFF  # same size, different checksum

    response = put(target, bytes(tampered))

    assert 400 <= response.status_code < 500, response.text
    assert "BadDigest" in response.text
    assert not store.exists(key)


def test_signed_headers_cannot_be_changed(store: S3ArtifactStore, key: str) -> None:
    target = target_for(store, key, PAYLOAD)
    other = PAYLOAD[::-1]
    swapped = dict(target.headers)
    swapped["x-amz-checksum-sha256"] = base64.b64encode(hashlib.sha256(other).digest()).decode()

    assert put(target, other, swapped).status_code == 403  # the checksum header is part of the signature
    longer = {**target.headers, "Content-Length": str(len(PAYLOAD) + 1)}
    assert put(target, PAYLOAD + b"x", longer).status_code == 403  # so is Content-Length
    assert not store.exists(key)


def test_presigned_url_is_write_once(store: S3ArtifactStore, key: str) -> None:
    assert put(target_for(store, key, PAYLOAD), PAYLOAD).status_code == 200

    again = put(target_for(store, key, b"replacement"), b"replacement")

    assert again.status_code == 412, again.text
    assert store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD)).ok


def test_wrong_credentials_are_rejected(seaweedfs: SeaweedS3, key: str) -> None:
    good = get_store(s3_settings(seaweedfs))
    wrong_secret = get_store(s3_settings(seaweedfs, s3_secret_access_key=SecretStr("not-the-secret")))
    unknown_key = get_store(s3_settings(seaweedfs, s3_access_key_id="nobody"))

    with pytest.raises(StorageError, match="LAKEHOUSE_S3_SECRET_ACCESS_KEY"):
        wrong_secret.exists(key)
    with pytest.raises(StorageError, match="refused the credentials"):
        unknown_key.size(key)

    with pytest.raises(StorageError, match="refused the credentials"):
        target_for(wrong_secret, key, PAYLOAD)  # the bucket check before presigning already fails

    # A URL presigned offline with a wrong secret is refused when used.
    assert isinstance(good, S3ArtifactStore)
    url = raw_client(seaweedfs, secret="not-the-secret").generate_presigned_url(
        "put_object", Params={"Bucket": good.bucket, "Key": good.object_key(key)}, ExpiresIn=60
    )
    response = httpx.put(url, content=PAYLOAD)
    assert response.status_code == 403, response.text
    assert "SignatureDoesNotMatch" in response.text
    assert not good.exists(key)


def test_bucket_is_created_on_first_use_once(seaweedfs: SeaweedS3, key: str) -> None:
    settings = s3_settings(seaweedfs)
    client = raw_client(seaweedfs)
    names = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    assert settings.s3_bucket not in names

    assert not get_store(settings).exists(key)
    # A second replica (another process, same settings) finds the bucket and keeps it.
    assert not S3ArtifactStore.from_settings(settings).exists(key)
    client.head_bucket(Bucket=settings.s3_bucket)


def test_verify_recomputes_from_the_stored_bytes(seaweedfs: SeaweedS3, store: S3ArtifactStore, key: str) -> None:
    assert put(target_for(store, key, PAYLOAD), PAYLOAD).status_code == 200
    client = raw_client(seaweedfs)
    replaced = PAYLOAD.replace(b"line 7\n", b"LINE 7\n")
    assert len(replaced) == len(PAYLOAD)
    # Overwrite behind the store's back, with checksum metadata that claims the original bytes.
    client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=replaced, Metadata={"sha256": sha(PAYLOAD)})

    result = store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD))

    assert not result.ok
    assert result.actual_sha256 == sha(replaced)
    assert result.actual_size == len(PAYLOAD)

    client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=PAYLOAD + b"more")
    grown = store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD))
    assert (grown.ok, grown.actual_size, grown.actual_sha256) == (False, len(PAYLOAD) + 4, None)

    missing = store.verify(key + "-absent", size=1, sha256=sha(b"x"))
    assert (missing.ok, missing.actual_size) == (False, None)


def test_range_reads(store: S3ArtifactStore, key: str) -> None:
    data = bytes(range(256)) * 4000
    assert put(target_for(store, key, data), data).status_code == 200

    assert b"".join(store.iter_bytes(key, start=10, end=20)) == data[10:20]
    assert b"".join(store.iter_bytes(key, start=100_000)) == data[100_000:]
    assert b"".join(store.iter_bytes(key, start=len(data) - 3, end=len(data) + 50)) == data[-3:]
    assert b"".join(store.iter_bytes(key, start=5, end=5)) == b""
    assert b"".join(store.iter_bytes(key, start=len(data) + 1)) == b""
    assert all(len(block) <= 1000 for block in store.iter_bytes(key, start=0, end=10_000, chunk_size=1000))
    with pytest.raises(ArtifactMissing):
        store.iter_bytes(key + "-absent")
    with pytest.raises(ArtifactMissing):
        store.size(key + "-absent")


def test_delete_pending_removes_a_rejected_upload(store: S3ArtifactStore, key: str) -> None:
    assert put(target_for(store, key, b"abc"), b"abc").status_code == 200
    store.delete_pending(key)
    assert not store.exists(key)


def test_uploads_do_not_go_through_the_control_plane(store: S3ArtifactStore, key: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    with pytest.raises(StorageError, match="presigned URL"):
        asyncio.run(store.receive(key, body(), size=3, sha256=sha(b"abc")))


def test_unreachable_endpoint_gives_an_actionable_error(key: str) -> None:
    settings = Settings(
        artifact_store="s3",
        s3_endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        s3_access_key_id="a",
        s3_secret_access_key=SecretStr("b"),
    )
    store = S3ArtifactStore.from_settings(settings)
    with pytest.raises(StorageError, match="LAKEHOUSE_S3_ENDPOINT_URL"):
        store.exists(key)


def test_bytes_the_control_plane_writes_are_checked_and_write_once(store: S3ArtifactStore, key: str) -> None:
    """put_bytes (the retention's Parquet archives): the server checks the SHA-256 and refuses a second write."""
    with pytest.raises(StorageError):
        store.put_bytes(key, PAYLOAD, sha256=sha(b"other"), content_type="application/vnd.apache.parquet")
    assert not store.exists(key)
    store.put_bytes(key, PAYLOAD, sha256=sha(PAYLOAD), content_type="application/vnd.apache.parquet")
    with pytest.raises(ArtifactExists):
        store.put_bytes(key, b"replaced", sha256=sha(b"replaced"), content_type="application/octet-stream")
    assert store.verify(key, size=len(PAYLOAD), sha256=sha(PAYLOAD)).ok
