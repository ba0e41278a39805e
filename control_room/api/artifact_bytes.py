"""Artifact bytes over HTTP: the OpenAPI shape of a raw-bytes body, and an artifact streamed from the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from anyio import to_thread
from fastapi.responses import StreamingResponse

from control_room.services import artifacts
from control_room.storage import get_store


def binary_content(media_type: str) -> dict[str, Any]:
    """The OpenAPI ``content`` of a body that is raw bytes of ``media_type``."""
    return {media_type: {"schema": {"type": "string", "format": "binary"}}}


def bytes_reply(description: str, media_type: str) -> dict[str, Any]:
    """The OpenAPI description of a 200 whose body is raw bytes of ``media_type``."""
    return {"description": description, "content": binary_content(media_type)}


async def stream_artifact(artifact: dict[str, Any], *, media_type: str, headers: dict[str, str]) -> StreamingResponse:
    """The artifact's bytes, read from the store in a worker thread, with its size and its SHA-256 as the ETag
    (then ``headers``)."""
    store = get_store()
    key = artifacts.storage_key_of(artifact)
    chunks: Iterator[bytes] = await to_thread.run_sync(lambda: store.iter_bytes(key))
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={"Content-Length": str(artifact["size_bytes"]), "ETag": f'"{artifact["sha256"]}"', **headers},
    )
