"""A real control-plane API server (uvicorn subprocess) and provisioning of tenants, executors and users."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from control_room.services.auth import EXECUTOR_TOKEN_PREFIX, USER_TOKEN_PREFIX, hash_token, new_token
from tests.integration.factories import Tenant, make_tenant


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(base_url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before becoming healthy")
        try:
            response = httpx.get(f"{base_url}/api/v1/health", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)  # polling a server that is starting: nothing to await
    raise TimeoutError(f"server at {base_url} not healthy after {timeout}s: {last}")


def refused_soon(send: Callable[[], httpx.Response], within: float = 5.0) -> httpx.Response:
    """The first 401 reply of ``send``, trying again until ``within`` seconds have passed (then its last reply).

    The API remembers who a token stands for until the database's notice that something behind it changed
    arrives (control_room/api/principals.py); a test that changes a token straight in the database is ahead
    of that notice by a few milliseconds, which a loaded machine may stretch. Meanwhile a request may also be
    refused by the SQL it reaches (a revoked executor's claim: 403), so only a 401 ends the wait."""
    deadline = time.monotonic() + within
    while (reply := send()).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the server for the refusal, with a deadline
    return reply


@dataclass
class LiveServer:
    """A uvicorn process serving control_room.api:api on a database of its own."""

    base_url: str
    database_url: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = self.base_url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "control_room.api:api",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--log-level",
                "warning",
                "--lifespan",
                "on",
            ],
            env=self.env,
            start_new_session=True,
        )
        wait_until_healthy(self.base_url, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def live_server(database_url: str, data_dir: Path, **settings: str) -> Iterator[LiveServer]:
    env = {
        **os.environ,
        "LAKEHOUSE_DATABASE_URL": database_url,
        "LAKEHOUSE_DATA_DIR": str(data_dir),
        "LAKEHOUSE_ENV": "test",
        **{f"LAKEHOUSE_{k.upper()}": v for k, v in settings.items()},
    }
    server = LiveServer(f"http://127.0.0.1:{free_port()}", database_url, data_dir, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Provisioner:
    """Creates what API tests need straight in the database (as an admin would with the CLI)."""

    database_url: str
    tenants: dict[str, Tenant] = field(default_factory=dict)

    def tenant(self, name: str = "main") -> Tenant:
        if name not in self.tenants:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                self.tenants[name] = make_tenant(conn)
        return self.tenants[name]

    def executor_token(self, pool: str, name: str | None = None, tenant: Tenant | None = None) -> str:
        """A token of a new executor in the pool of the tenant's org (the main tenant by default)."""
        tenant = tenant or self.tenant()
        token = new_token(EXECUTOR_TOKEN_PREFIX)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(
                "insert into ops.executors (org_id, name, pool, token_hash) values (%s, %s, %s, %s)",
                (tenant.org_id, name or f"agent-{uuid.uuid4().hex[:8]}", pool, hash_token(token)),
            )
        return token

    def user_token(self, role: str, tenant: Tenant | None = None) -> tuple[uuid.UUID, str]:
        """A user with the role on the tenant's project, and an API token of theirs."""
        tenant = tenant or self.tenant()
        token = new_token(USER_TOKEN_PREFIX)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "insert into ops.users (email) values (%s) returning id",
                (f"{role}-{uuid.uuid4().hex[:8]}@test.example",),
            ).fetchone()
            assert row
            user_id = row[0]
            conn.execute(
                "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
                (tenant.project_id, user_id, role),
            )
            conn.execute(
                "insert into ops.api_tokens (user_id, name, token_prefix, token_hash) values (%s, 'test', %s, %s)",
                (user_id, token[:8], hash_token(token)),
            )
        return user_id, token
