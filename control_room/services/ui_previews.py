"""Artifact previews for the web UI: text and logs (tail first), JSON as a collapsible tree, CSV and
Parquet as paged tables, images as data URLs, and "verify" (re-hash the stored bytes).

Access is checked first, as the user, through ``artifacts.get_artifact`` (RLS); the bytes are then
read from the artifact store in a worker thread, never more than a bounded amount per preview.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import html
import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import AsyncConnection

from control_room.services import result_policies
from control_room.services.artifacts import get_artifact, storage_key_of
from control_room.services.errors import Invalid
from control_room.storage import ArtifactStore, StorageError, VerifyResult, get_store

PreviewKind = Literal["text", "json", "csv", "parquet", "image", "binary"]

TEXT_CHUNK_BYTES = 64 * 1024
MAX_JSON_BYTES = 2 * 1024 * 1024
MAX_TABLE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024
TABLE_PAGE_ROWS = 50
MAX_CELL_CHARS = 200
# A JSON tree deeper or wider than this is cut (with a note), so the page stays responsive.
MAX_TREE_NODES = 5000

_TEXT_SUFFIXES = (".txt", ".log", ".out", ".err", ".md", ".sql", ".py", ".sh", ".yaml", ".yml", ".toml", ".html")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml")


@dataclass(frozen=True)
class TextChunk:
    """A window ``[start, end)`` of a text artifact; the first one shown is the end of the file."""

    text: str
    start: int
    end: int
    size: int

    @property
    def has_earlier(self) -> bool:
        """Whether bytes before this window exist (a "load earlier" button)."""
        return self.start > 0


@dataclass(frozen=True)
class TablePage:
    """One page of a CSV or Parquet artifact."""

    columns: list[str]
    rows: list[list[str]]
    page: int
    total_rows: int
    page_rows: int = TABLE_PAGE_ROWS

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        return max(1, -(-self.total_rows // self.page_rows))


@dataclass(frozen=True)
class Preview:
    """What the artifact browser shows for one artifact."""

    kind: PreviewKind
    text: TextChunk | None = None
    json_html: str = ""
    table: TablePage | None = None
    image_url: str = ""
    note: str = ""
    artifact: dict[str, Any] = field(default_factory=dict)


def preview_kind(name: str, content_type: str) -> PreviewKind:
    """How an artifact is previewed, from its content type and, failing that, its name."""
    lowered = name.lower()
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json") or lowered.endswith((".json", ".ipynb")):
        return "json"
    if ctype in ("text/csv", "application/csv") or lowered.endswith(".csv"):
        return "csv"
    if ctype in ("application/vnd.apache.parquet", "application/x-parquet") or lowered.endswith(".parquet"):
        return "parquet"
    if ctype in _IMAGE_TYPES or lowered.endswith((".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")):
        return "image"
    if ctype.startswith("text/") or lowered.endswith(_TEXT_SUFFIXES) or ctype in ("application/x-ndjson",):
        return "text"
    if lowered.endswith(".jsonl"):
        return "text"
    return "binary"


def _read(store: ArtifactStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.iter_bytes(key, start=start, end=end, chunk_size=1 << 20))


def text_window(store: ArtifactStore, key: str, size: int, *, end: int | None = None) -> TextChunk:
    """Up to TEXT_CHUNK_BYTES of text ending at ``end`` (default: the end of the file), cut at line
    starts so no line is shown half, and decoded leniently (logs may hold any bytes)."""
    stop = size if end is None else max(0, min(end, size))
    start = max(0, stop - TEXT_CHUNK_BYTES)
    data = _read(store, key, start, stop)
    if start > 0:
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            start += newline + 1
            data = data[newline + 1 :]
    return TextChunk(text=data.decode("utf-8", errors="replace"), start=start, end=stop, size=size)


def json_tree_html(value: Any) -> str:
    """Nested ``<details>`` elements: objects and arrays collapse and expand in the browser without
    a round trip. Every key and value is HTML-escaped; the first two levels start open."""
    budget = [MAX_TREE_NODES]

    def scalar(item: Any) -> str:
        kind = "null" if item is None else type(item).__name__
        text = json.dumps(item, ensure_ascii=False)
        if len(text) > 500:
            text = text[:500] + "…"
        return f'<span class="json-{html.escape(kind)}">{html.escape(text)}</span>'

    def node(label: str, item: Any, depth: int) -> str:
        budget[0] -= 1
        key = f'<span class="json-key">{html.escape(label)}</span>: ' if label else ""
        if budget[0] < 0:
            return ""
        if isinstance(item, dict | list):
            pairs = list(item.items()) if isinstance(item, dict) else [(f"[{i}]", v) for i, v in enumerate(item)]
            opener, closer = ("{", "}") if isinstance(item, dict) else ("[", "]")
            count = f"{len(pairs)} {'keys' if isinstance(item, dict) else 'items'}"
            children = "".join(f"<li>{node(str(k), v, depth + 1)}</li>" for k, v in pairs)
            if budget[0] < 0:
                children += '<li class="json-note">… cut: download the file for the rest</li>'
            is_open = " open" if depth < 2 else ""
            return (
                f"<details{is_open}><summary>{key}{opener} <small>{count}</small></summary>"
                f'<ul class="json-children">{children}</ul>{closer}</details>'
            )
        return f"{key}{scalar(item)}"

    return f'<div class="json-tree">{node("", value, 0)}</div>'


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


def table_page(
    data: bytes, kind: Literal["csv", "parquet"], *, page: int, masks: Mapping[str, str] | None = None
) -> TablePage:
    """Page ``page`` (from 0) of a CSV or Parquet file held in memory; the columns named in ``masks``
    (lower-case name -> mask kind, from the sources' access policies) masked."""
    found = _table_page(data, kind, page=page)
    if not masks:
        return found
    kinds = [masks.get(name.lower()) for name in found.columns]
    rows = [
        [cell if k is None else _cell(result_policies.mask_value(k, cell if cell != "" else None)) for cell, k in
         zip(row, kinds, strict=False)]
        for row in found.rows
    ]  # fmt: skip
    return TablePage(columns=found.columns, rows=rows, page=found.page, total_rows=found.total_rows)


def _table_page(data: bytes, kind: Literal["csv", "parquet"], *, page: int) -> TablePage:
    if page < 0:
        raise Invalid("must be 0 or more", field="page")
    first = page * TABLE_PAGE_ROWS
    if kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(io.BytesIO(data))
        total = parquet.metadata.num_rows
        columns = [str(name) for name in parquet.schema_arrow.names]
        rows: list[list[str]] = []
        offset = 0
        # Read only the row groups that overlap the page.
        for group in range(parquet.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            if offset + group_rows > first and offset < first + TABLE_PAGE_ROWS:
                table = parquet.read_row_group(group)
                lo = max(0, first - offset)
                hi = min(group_rows, first + TABLE_PAGE_ROWS - offset)
                for record in table.slice(lo, hi - lo).to_pylist():
                    rows.append([_cell(record.get(name)) for name in columns])
            offset += group_rows
            if offset >= first + TABLE_PAGE_ROWS:
                break
        return TablePage(columns=columns, rows=rows, page=page, total_rows=total)
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    header = next(reader, [])
    rows = []
    total = 0
    for record in reader:
        if first <= total < first + TABLE_PAGE_ROWS:
            rows.append([_cell(value) for value in record])
        total += 1
    return TablePage(columns=[_cell(name) for name in header], rows=rows, page=page, total_rows=total)


def _preview_from_store(
    store: ArtifactStore,
    artifact: dict[str, Any],
    *,
    page: int,
    end: int | None,
    masks: Mapping[str, str] | None = None,
) -> Preview:
    key = storage_key_of(artifact)
    size = int(artifact["size_bytes"])
    kind = preview_kind(artifact["name"], artifact["content_type"])
    too_large = "too large to preview here ({size:,} bytes); download it instead"
    try:
        if kind == "text":
            return Preview(kind=kind, text=text_window(store, key, size, end=end), artifact=artifact)
        if kind == "json":
            if size > MAX_JSON_BYTES:
                return Preview(
                    kind="text",
                    text=text_window(store, key, size, end=end),
                    artifact=artifact,
                    note=f"JSON {too_large.format(size=size)}; showing the end as text",
                )
            try:
                parsed = json.loads(_read(store, key))
            except (ValueError, UnicodeDecodeError) as exc:
                return Preview(
                    kind="text",
                    text=text_window(store, key, size, end=end),
                    artifact=artifact,
                    note=f"not valid JSON ({exc}); shown as text",
                )
            return Preview(kind=kind, json_html=json_tree_html(parsed), artifact=artifact)
        if kind in ("csv", "parquet"):
            if size > MAX_TABLE_BYTES:
                return Preview(kind="binary", artifact=artifact, note=f"Table {too_large.format(size=size)}")
            try:
                table = table_page(_read(store, key), kind, page=page, masks=masks)  # type: ignore[arg-type]
            except Exception as exc:  # a malformed file is shown as such, not as a server error
                return Preview(kind="binary", artifact=artifact, note=f"cannot read it as {kind.upper()}: {exc}")
            return Preview(kind=kind, table=table, artifact=artifact)
        if kind == "image":
            if size > MAX_IMAGE_BYTES:
                return Preview(kind="binary", artifact=artifact, note=f"Image {too_large.format(size=size)}")
            ctype = artifact["content_type"] if artifact["content_type"].startswith("image/") else "image/png"
            encoded = base64.b64encode(_read(store, key)).decode()
            return Preview(kind=kind, image_url=f"data:{ctype};base64,{encoded}", artifact=artifact)
    except StorageError as exc:
        return Preview(kind="binary", artifact=artifact, note=f"the stored bytes cannot be read: {exc}")
    return Preview(kind="binary", artifact=artifact, note="no preview for this type; download it")


async def artifact_preview(
    conn: AsyncConnection, *, artifact_id: uuid.UUID, page: int = 0, text_end: int | None = None
) -> Preview:
    """The preview of an artifact the caller may see (RLS applies to the metadata read; the access policies of
    the datasets its task read may withhold its content: then the note says why)."""
    artifact = await get_artifact(conn, artifact_id=artifact_id)
    policy = await result_policies.rows_policy(conn, artifact=artifact)
    if policy.withheld is not None:
        return Preview(kind="binary", artifact=artifact, note=policy.withheld)
    if policy.masks and preview_kind(artifact["name"], artifact["content_type"]) not in ("csv", "parquet"):
        # Only tables are masked by column: other content could hold the masked values as they were.
        return Preview(kind="binary", artifact=artifact, note=str(policy.reason_for_bytes))
    store = get_store()
    return await asyncio.to_thread(
        _preview_from_store, store, artifact, page=page, end=text_end, masks=policy.masks or None
    )


async def verify_artifact(conn: AsyncConnection, *, artifact_id: uuid.UUID) -> VerifyResult:
    """Re-read the stored bytes and compare their size and SHA-256 with what was recorded."""
    artifact = await get_artifact(conn, artifact_id=artifact_id)
    store = get_store()
    key = storage_key_of(artifact)
    size, sha256 = int(artifact["size_bytes"]), str(artifact["sha256"])
    try:
        return await asyncio.to_thread(store.verify, key, size=size, sha256=sha256)
    except StorageError as exc:
        return VerifyResult(
            ok=False, expected_sha256=sha256, actual_sha256=None, expected_size=size, actual_size=None, message=str(exc)
        )
