"""Artifact previews and verify, from a real local store, with metadata read as the user (RLS)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from control_room.config import get_settings
from control_room.services import ui_previews
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import NotFound
from control_room.storage import get_store
from tests.integration.factories import submit, task
from tests.ui.conftest import Team, run_async

StoreArtifact = Callable[..., uuid.UUID]


@pytest.fixture
def store_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection, team: Team
) -> Iterator[StoreArtifact]:
    """Write bytes into a local store and register them as an artifact of a fresh run."""
    monkeypatch.setenv("LAKEHOUSE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("LAKEHOUSE_ARTIFACT_STORE", "local")
    get_settings.cache_clear()
    run_id = submit(db, team.tenant, [task("t")])
    task_row = db.execute("select id from ops.tasks where run_id = %s", (run_id,)).fetchone()
    assert task_row

    def store(name: str, data: bytes, content_type: str) -> uuid.UUID:
        from control_room.storage import artifact_key

        key = artifact_key(team.tenant.project_id, run_id, task_row[0], 1, name)
        path = tmp_path / "artifacts" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        row = db.execute(
            "insert into ops.artifacts (run_id, project_id, task_id, attempt, name, uri, size_bytes, sha256, "
            "content_type) values (%s, %s, %s, 1, %s, %s, %s, %s, %s) returning id",
            (
                run_id,
                team.tenant.project_id,
                task_row[0],
                name,
                get_store().uri(key),
                len(data),
                hashlib.sha256(data).hexdigest(),
                content_type,
            ),
        ).fetchone()
        assert row
        return uuid.UUID(str(row[0]))

    yield store
    get_settings.cache_clear()


def _preview(database_url: str, who: UserPrincipal, artifact_id: uuid.UUID, **kwargs: int) -> ui_previews.Preview:
    async def work(conn: psycopg.AsyncConnection) -> ui_previews.Preview:
        async with scoped(conn, who):
            return await ui_previews.artifact_preview(conn, artifact_id=artifact_id, **kwargs)

    return run_async(database_url, work)


def test_kinds_from_content_type_and_name() -> None:
    kind = ui_previews.preview_kind
    assert kind("out/result.json", "application/octet-stream") == "json"
    assert kind("x", "application/json; charset=utf-8") == "json"
    assert kind("table.csv", "text/plain") == "csv"
    assert kind("t.parquet", "application/octet-stream") == "parquet"
    assert kind("chart", "image/png") == "image"
    assert kind("stdout.log", "application/octet-stream") == "text"
    assert kind("model.bin", "application/octet-stream") == "binary"


def test_logs_open_at_their_end_and_page_back(database_url: str, team: Team, store_artifact: StoreArtifact) -> None:
    lines = [f"line {i:06d} " + "x" * 50 for i in range(5000)]
    artifact = store_artifact("stdout.log", ("\n".join(lines) + "\n").encode(), "text/plain")
    last = _preview(database_url, team.viewer.principal, artifact)
    assert last.kind == "text" and last.text is not None
    assert last.text.text.endswith(lines[-1] + "\n")
    assert last.text.has_earlier
    first_shown = last.text.text.splitlines()[0]
    assert first_shown in lines  # cut at a line start, never half a line
    earlier = _preview(database_url, team.viewer.principal, artifact, text_end=last.text.start)
    assert earlier.text is not None and earlier.text.end == last.text.start
    assert earlier.text.text.splitlines()[-1] == lines[lines.index(first_shown) - 1]


def test_json_tree_is_collapsible_and_escaped(database_url: str, team: Team, store_artifact: StoreArtifact) -> None:
    document = {"metrics": {"rows": 42, "ok": True}, "<script>alert(1)</script>": [1, None, "a&b"]}
    artifact = store_artifact("result.json", json.dumps(document).encode(), "application/json")
    preview = _preview(database_url, team.viewer.principal, artifact)
    assert preview.kind == "json"
    assert preview.json_html.count("<details") == 3
    assert "<script>" not in preview.json_html
    assert "&lt;script&gt;" in preview.json_html and "a&amp;b" in preview.json_html


def test_invalid_json_falls_back_to_text(database_url: str, team: Team, store_artifact: StoreArtifact) -> None:
    artifact = store_artifact("broken.json", b'{"a": ', "application/json")
    preview = _preview(database_url, team.viewer.principal, artifact)
    assert preview.kind == "text" and "not valid JSON" in preview.note


def test_csv_and_parquet_are_paged(database_url: str, team: Team, store_artifact: StoreArtifact) -> None:
    csv_bytes = ("id,name\n" + "".join(f"{i},row-{i}\n" for i in range(120))).encode()
    csv_artifact = store_artifact("data.csv", csv_bytes, "text/csv")
    page = _preview(database_url, team.viewer.principal, csv_artifact, page=2).table
    assert page is not None
    assert (page.columns, page.total_rows, page.pages) == (["id", "name"], 120, 3)
    assert page.rows[0] == ["100", "row-100"] and len(page.rows) == 20

    table = pa.table({"n": list(range(130)), "label": [f"l{i}" for i in range(130)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=40)
    parquet_artifact = store_artifact("data.parquet", buffer.getvalue(), "application/vnd.apache.parquet")
    page = _preview(database_url, team.viewer.principal, parquet_artifact, page=1).table
    assert page is not None
    assert page.columns == ["n", "label"] and page.total_rows == 130
    assert [row[0] for row in page.rows] == [str(i) for i in range(50, 100)]


def test_images_become_data_urls(database_url: str, team: Team, store_artifact: StoreArtifact) -> None:
    png = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 32
    artifact = store_artifact("chart.png", png, "image/png")
    preview = _preview(database_url, team.viewer.principal, artifact)
    assert preview.kind == "image" and preview.image_url.startswith("data:image/png;base64,iVBORw0KGgo")


def test_verify_rehashes_the_stored_bytes(
    database_url: str, team: Team, store_artifact: StoreArtifact, tmp_path: Path
) -> None:
    artifact = store_artifact("report.txt", b"all good\n", "text/plain")

    def verify() -> ui_previews.VerifyResult:
        async def work(conn: psycopg.AsyncConnection) -> ui_previews.VerifyResult:
            async with scoped(conn, team.viewer.principal):
                return await ui_previews.verify_artifact(conn, artifact_id=artifact)

        return run_async(database_url, work)

    assert verify().ok
    stored = next((tmp_path / "artifacts").rglob("report.txt"))
    os.chmod(stored, 0o644)
    stored.write_bytes(b"all bad!\n")  # same size, other bytes
    result = verify()
    assert not result.ok
    assert result.actual_sha256 == hashlib.sha256(b"all bad!\n").hexdigest()
    assert "hash to" in result.message


def test_someone_outside_the_project_gets_not_found(
    database_url: str, team: Team, store_artifact: StoreArtifact
) -> None:
    artifact = store_artifact("secret.txt", b"top secret\n", "text/plain")
    with pytest.raises(NotFound):
        _preview(database_url, team.outsider.principal, artifact)
