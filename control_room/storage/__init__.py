"""Artifact stores: write-once, SHA-256 verified artifact bytes in a local folder or on S3."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from control_room.config import Settings, get_settings
from control_room.storage.base import (
    ArtifactExists,
    ArtifactMissing,
    ArtifactStore,
    ChecksumMismatch,
    SizeMismatch,
    StorageError,
    UploadTarget,
    VerifyResult,
    artifact_key,
)
from control_room.storage.local import LocalArtifactStore

if TYPE_CHECKING:  # boto3 takes about a second to import: a replica on a local store never pays it
    from control_room.storage.s3 import S3ArtifactStore

__all__ = [
    "ArtifactExists",
    "ArtifactMissing",
    "ArtifactStore",
    "ChecksumMismatch",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "SizeMismatch",
    "StorageError",
    "UploadTarget",
    "VerifyResult",
    "artifact_key",
    "get_store",
]


def __getattr__(name: str) -> Any:
    """``S3ArtifactStore`` on first use (PEP 562), so ``from control_room.storage import S3ArtifactStore`` works."""
    if name == "S3ArtifactStore":
        from control_room.storage.s3 import S3ArtifactStore

        return S3ArtifactStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_stores: dict[tuple[object, ...], ArtifactStore] = {}
_stores_lock = threading.Lock()


def get_store(settings: Settings | None = None) -> ArtifactStore:
    """The artifact store the settings describe, one instance per distinct store configuration."""
    settings = settings or get_settings()
    identity = _store_identity(settings)
    with _stores_lock:
        store = _stores.get(identity)
        if store is None:
            store = _build_store(settings)
            _stores[identity] = store
        return store


def _store_identity(settings: Settings) -> tuple[object, ...]:
    # Settings objects are not hashable; the fields that shape a store are.
    if settings.artifact_store == "local":
        return ("local", str(settings.artifacts_path.expanduser().resolve()), settings.upload_url_expiry_seconds)
    secret = settings.s3_secret_access_key
    return (
        "s3",
        settings.s3_endpoint_url,
        settings.s3_bucket,
        settings.s3_prefix,
        settings.s3_region,
        settings.s3_access_key_id,
        secret.get_secret_value() if secret is not None else None,
        settings.upload_url_expiry_seconds,
    )


def _build_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "local":
        return LocalArtifactStore(settings.artifacts_path, upload_url_expiry_seconds=settings.upload_url_expiry_seconds)
    if settings.artifact_store == "s3":
        from control_room.storage.s3 import S3ArtifactStore

        return S3ArtifactStore.from_settings(settings)
    raise ValueError(f"LAKEHOUSE_ARTIFACT_STORE must be 'local' or 's3', got {settings.artifact_store!r}")
