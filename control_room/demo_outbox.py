"""The demo's outbox: a local SMTP server and a Slack (incoming-webhook) receiver that keep what the alert
sender delivers, so `lakehouse run`'s demo delivers its alerts end to end with no mail server or Slack
workspace (the way a dev stack runs MailHog beside the app).

`lakehouse run` starts it only with the demo data, and only for what is not configured: with
LAKEHOUSE_SMTP_HOST set, e-mail goes to that server; with a demo channel's URL variable set, that channel
posts there. Each message is a file under ``<data dir>/outbox``: ``mail/*.eml`` and ``slack/<channel>/*.json``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# The demo bundle's Slack channels (examples/bundle/alert_channels.yaml) and the variables naming their URLs.
DEMO_SLACK_CHANNELS = {
    "data-platform": "DEMO_SLACK_DATA_PLATFORM_URL",
    "data-incidents": "DEMO_SLACK_DATA_INCIDENTS_URL",
}
SLACK_PATH = "/slack/"
MAX_BODY_BYTES = 1024 * 1024


def _free_port(host: str) -> int:
    # aiosmtpd's controller connects to its own port to see it serve, so it needs a real one, not 0.
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _Numbered:
    """File names that sort in arrival order and never collide (one process writes them)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def name(self, suffix: str) -> str:
        with self._lock:
            return f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self._next):05d}{suffix}"


@dataclass
class _MailKeeper:
    directory: Path
    names: _Numbered

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.directory.mkdir(parents=True, exist_ok=True)
        content = envelope.original_content or b""
        (self.directory / self.names.name(".eml")).write_bytes(content)
        return "250 kept in the demo outbox"


def _slack_handler(directory: Path, names: _Numbered) -> type[BaseHTTPRequestHandler]:
    class SlackWebhook(BaseHTTPRequestHandler):
        """Slack's incoming webhook, as far as a sender sees it: POST a JSON message, get 200 ``ok``."""

        def do_POST(self) -> None:
            status, text = self._keep()
            self._reply(status, text)

        def _keep(self) -> tuple[HTTPStatus, str]:
            """Slack's answers: ``ok``, or an error code word (``no_service``, ``invalid_payload``, ...)."""
            channel = self.path.removeprefix(SLACK_PATH).strip("/")
            if not self.path.startswith(SLACK_PATH) or channel not in DEMO_SLACK_CHANNELS:
                return HTTPStatus.NOT_FOUND, "no_service"
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large"
            try:
                message: Any = json.loads(self.rfile.read(length))
            except ValueError:
                return HTTPStatus.BAD_REQUEST, "invalid_payload"
            if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
                return HTTPStatus.BAD_REQUEST, "no_text"
            target = directory / channel
            target.mkdir(parents=True, exist_ok=True)
            (target / names.name(".json")).write_text(json.dumps(message, indent=2), encoding="utf-8")
            return HTTPStatus.OK, "ok"

        def _reply(self, status: HTTPStatus, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the files are the record; the supervisor's console stays quiet

    return SlackWebhook


@dataclass
class DemoOutbox:
    """The SMTP server and the Slack receiver, on free ports of ``host``, keeping messages under ``directory``."""

    directory: Path
    host: str = "127.0.0.1"
    smtp_port: int = 0
    http_port: int = 0
    _smtp: Controller | None = field(default=None, init=False, repr=False)
    _http: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def mail_dir(self) -> Path:
        return self.directory / "mail"

    @property
    def slack_dir(self) -> Path:
        return self.directory / "slack"

    def slack_url(self, channel: str) -> str:
        return f"http://{self.host}:{self.http_port}{SLACK_PATH}{channel}"

    def start(self) -> DemoOutbox:
        names = _Numbered()
        self.smtp_port = _free_port(self.host)
        self._smtp = Controller(_MailKeeper(self.mail_dir, names), hostname=self.host, port=self.smtp_port)
        self._smtp.start()
        self._http = ThreadingHTTPServer((self.host, 0), _slack_handler(self.slack_dir, names))
        self.http_port = int(self._http.server_address[1])
        threading.Thread(target=self._http.serve_forever, name="demo-outbox-slack", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._smtp is not None:
            with contextlib.suppress(Exception):  # already stopped, or its loop gone with a failed start
                self._smtp.stop()
            self._smtp = None

    def environment(self, configured: dict[str, str]) -> dict[str, str]:
        """The variables pointing the control room at this outbox, for those ``configured`` does not set."""
        env: dict[str, str] = {}
        if not configured.get("LAKEHOUSE_SMTP_HOST"):
            env |= {"LAKEHOUSE_SMTP_HOST": self.host, "LAKEHOUSE_SMTP_PORT": str(self.smtp_port),
                    "LAKEHOUSE_SMTP_STARTTLS": "false"}  # fmt: skip
        for channel, variable in DEMO_SLACK_CHANNELS.items():
            if not configured.get(variable):
                env[variable] = self.slack_url(channel)
        return env
