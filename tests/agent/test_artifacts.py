"""Artifacts: bytes corrupted on the way are refused by the store and sent again from the spool (local and S3)."""

from __future__ import annotations

import hashlib
import threading

import httpx
import psycopg

from tests.agent.conftest import StartAgent, operator_client, run_events, submit, wait_for_run
from tests.live import LiveServer, Provisioner


class CorruptFirstUpload(httpx.BaseTransport):
    """A real HTTP transport that flips one byte of the first artifact upload, as a bad network hop would."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.corrupted = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            with self.lock:
                first = self.corrupted == 0
                self.corrupted += 1
            if first:
                body = bytearray(request.read())
                body[len(body) // 2] ^= 0xFF
                request = httpx.Request(request.method, request.url, headers=request.headers, content=bytes(body))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def corrupted_upload_is_retried(
    server: LiveServer, provision: Provisioner, database_url: str, pool: str, start_agent: StartAgent, *, via_s3: bool
) -> None:
    operator = operator_client(server, provision.user_token("operator")[1])
    transport = CorruptFirstUpload()
    agent = start_agent(server, provision.executor_token(pool), transport=transport)
    command = "head -c 300000 /dev/urandom > data.bin && sha256sum data.bin"
    run = submit(
        operator,
        provision.tenant().project_id,
        [{"key": "produce", "engine": "shell", "pool": pool, "command": command, "artifacts": ["data.bin"]}],
    )
    detail = wait_for_run(operator, run["id"], timeout=60)
    assert detail["status"] == "succeeded", detail
    assert transport.corrupted == 2, "one refused upload, then the good one"
    assert agent.agent.stats.uploads_rejected == 1 and agent.agent.stats.artifacts_stored == 1

    (artifact,) = operator.get(f"/runs/{run['id']}/artifacts").json()["items"]
    content = operator.get(f"/artifacts/{artifact['id']}/content").content
    assert len(content) == 300000 == artifact["size_bytes"]
    assert hashlib.sha256(content).hexdigest() == artifact["sha256"]
    events = run_events(operator, run["id"])
    printed = [e["message"] for e in events if e["type"] == "log" and e["message"].endswith("data.bin")]
    assert printed and printed[0].split()[0] == artifact["sha256"], "the stored bytes are the ones the task wrote"
    retries = [e["message"] for e in events if e["type"] == "artifact.retry"]
    assert len(retries) == 1 and ("BadDigest" if via_s3 else "SHA-256") in retries[0]
    with psycopg.connect(database_url) as conn:
        uploads = conn.execute(
            "select status, error is not null from ops.artifact_uploads where task_id = %s order by created_at",
            (detail["tasks"][0]["id"],),
        ).fetchall()
    assert len(uploads) == 2 and uploads[-1][0] == "completed"
    assert uploads[0][0] != "completed", "the corrupted upload was never registered"
    if not via_s3:  # the local store receives the bytes itself and records why it refused them
        assert uploads[0][1]


def test_corrupted_upload_to_the_local_store_is_retried_from_the_spool(
    live_api: LiveServer, provision: Provisioner, api_database_url: str, pool: str, start_agent: StartAgent
) -> None:
    corrupted_upload_is_retried(live_api, provision, api_database_url, pool, start_agent, via_s3=False)


def test_corrupted_upload_to_s3_is_retried_from_the_spool(
    live_api_s3: LiveServer, provision: Provisioner, api_database_url: str, pool: str, start_agent: StartAgent
) -> None:
    corrupted_upload_is_retried(live_api_s3, provision, api_database_url, pool, start_agent, via_s3=True)
