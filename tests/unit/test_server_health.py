"""poll_health: returns once /health answers 200, names the server when its process exits or the deadline passes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from control_room.server_health import poll_health


class _Failed(RuntimeError):
    pass


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _poll(url: str, process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    poll_health(url, process, name="the test server", where=" (see its log)", timeout_seconds=timeout,
                poll_seconds=0.05, error=_Failed)  # fmt: skip


def test_a_healthy_server_returns_at_once(server: tuple[str, type[_Health]]) -> None:
    url, _ = server
    _poll(url, None)


def test_an_unhealthy_answer_is_named_when_the_deadline_passes(server: tuple[str, type[_Health]]) -> None:
    url, handler = server
    handler.status = 503
    with pytest.raises(
        _Failed, match=r"the test server at .* was not healthy after 0 s \(last answer: HTTP 503\) \(see its log\)"
    ):
        _poll(url, None, timeout=0.3)


def test_an_exited_process_is_reported_with_its_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=30)
    with pytest.raises(_Failed, match=r"the test server exited with code 3 \(see its log\)"):
        _poll("http://127.0.0.1:9", process)
