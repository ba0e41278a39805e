"""Artifact store on S3 (AWS, MinIO, SeaweedFS, Supabase Storage): executors upload to presigned URLs."""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from control_room.storage.base import (
    ArtifactExists,
    ArtifactMissing,
    ArtifactStore,
    StorageError,
    UploadTarget,
    check_key,
)

if TYPE_CHECKING:
    from control_room.config import Settings

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects ``<prefix><key>`` in one bucket, created on first use when missing."""

    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        upload_url_expiry_seconds: int = 900,
    ) -> None:
        self.bucket = bucket
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint_url = endpoint_url
        self.region = region
        self.upload_url_expiry_seconds = upload_url_expiry_seconds
        config = Config(
            # Without s3v4 botocore may presign with SigV2, which signs neither the size nor the checksum.
            signature_version="s3v4",
            s3={"addressing_style": "path"},  # SeaweedFS and MinIO have no virtual-host bucket names
            retries={"max_attempts": 3, "mode": "standard"},
            # Newer botocore adds CRC checksums by default, which S3-compatible servers do not all accept.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=10,
            read_timeout=60,
        )
        # A client of its own session: boto3's default session is not thread-safe to create clients from.
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ArtifactStore:
        """The store described by the ``LAKEHOUSE_S3_*`` settings."""
        secret = settings.s3_secret_access_key
        return cls(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            upload_url_expiry_seconds=settings.upload_url_expiry_seconds,
        )

    def object_key(self, key: str) -> str:
        """The object name in the bucket."""
        return self.prefix + check_key(key)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def _upload_target(
        self, key: str, *, size: int, sha256: str, content_type: str, local_put_url: str
    ) -> UploadTarget:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        self._ensure_bucket()
        expires_at = datetime.now(UTC) + timedelta(seconds=self.upload_url_expiry_seconds)
        params = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "ContentLength": size,
            "ContentType": content_type,
            # Signed into the URL: the server rejects bytes with another SHA-256 (BadDigest) and never stores them.
            "ChecksumSHA256": checksum,
            # Write-once at the server too: a second PUT to the same key fails with 412.
            "IfNoneMatch": "*",
        }
        try:
            url = self._client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=self.upload_url_expiry_seconds, HttpMethod="PUT"
            )
        except (BotoCoreError, ClientError) as exc:
            self._raise("presign an upload URL for", key, exc)
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(size),
            "x-amz-checksum-sha256": checksum,
            "If-None-Match": "*",
        }
        return UploadTarget(url=str(url), method="PUT", headers=headers, expires_at=expires_at)

    async def _receive(self, key: str, chunks: AsyncIterator[bytes], *, size: int, sha256: str) -> None:
        raise StorageError(
            f"artifact {key!r}: the S3 artifact store does not accept bytes through the control plane; "
            "uploads go to the presigned URL returned by upload_target"
        )

    def _put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        self._ensure_bucket()
        try:
            # The server checks the SHA-256 (BadDigest otherwise) and refuses a second write (412).
            self._client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type,
                ChecksumSHA256=checksum, IfNoneMatch="*",
            )  # fmt: skip
        except ClientError as exc:
            if _error_code(exc) in ("412", "PreconditionFailed"):
                raise ArtifactExists(key) from exc
            self._raise("write", key, exc)
        except BotoCoreError as exc:
            self._raise("write", key, exc)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ArtifactMissing:
            return False
        return True

    def size(self, key: str) -> int:
        self._ensure_bucket()
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            self._raise("read the size of", key, exc)
        return int(head["ContentLength"])

    def _iter_range(self, key: str, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        if start == stop:
            return iter(())
        return self._read(key, f"bytes={start}-{stop - 1}", chunk_size=chunk_size)

    def _read(self, key: str, byte_range: str | None, *, chunk_size: int) -> Iterator[bytes]:
        extra = {"Range": byte_range} if byte_range else {}
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key), **extra)
        except (BotoCoreError, ClientError) as exc:
            self._raise("read", key, exc)
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        except BotoCoreError as exc:
            self._raise("read", key, exc)
        finally:
            body.close()

    def delete_pending(self, key: str) -> None:
        self._ensure_bucket()
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            self._raise("delete the rejected upload of", key, exc)

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in _NOT_FOUND:
                    self._raise_bucket("check", exc)
                self._create_bucket()
            except BotoCoreError as exc:
                self._raise_bucket("check", exc)
            self._bucket_ready = True

    def _create_bucket(self) -> None:
        extra: dict[str, Any] = {}
        if self.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as exc:
            # Another control-room replica may have created it a moment ago.
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                self._raise_bucket("create", exc)
        except BotoCoreError as exc:
            self._raise_bucket("create", exc)

    def _raise(self, action: str, key: str, exc: BotoCoreError | ClientError) -> NoReturn:
        if isinstance(exc, ClientError) and _error_code(exc) in _NOT_FOUND:
            raise ArtifactMissing(key, self.uri(key)) from exc
        raise StorageError(f"could not {action} artifact {key!r} at {self.uri(key)}: {self._advice(exc)}") from exc

    def _raise_bucket(self, action: str, exc: BotoCoreError | ClientError) -> NoReturn:
        raise StorageError(f"could not {action} the artifact bucket {self.bucket!r}: {self._advice(exc)}") from exc

    def _advice(self, exc: BotoCoreError | ClientError) -> str:
        where = self.endpoint_url or "AWS S3"
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code in _DENIED:
                return (
                    f"{where} refused the credentials ({code}); check LAKEHOUSE_S3_ACCESS_KEY_ID and "
                    "LAKEHOUSE_S3_SECRET_ACCESS_KEY and that they may read and write this bucket"
                )
            message = exc.response.get("Error", {}).get("Message", "")
            return f"{where} answered {code}: {message}".rstrip(": ")
        if isinstance(exc, EndpointConnectionError):
            return f"cannot connect to {where}; check LAKEHOUSE_S3_ENDPOINT_URL and that the server is running"
        if isinstance(exc, NoCredentialsError):
            return "no S3 credentials found; set LAKEHOUSE_S3_ACCESS_KEY_ID and LAKEHOUSE_S3_SECRET_ACCESS_KEY"
        return f"{type(exc).__name__}: {exc}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
