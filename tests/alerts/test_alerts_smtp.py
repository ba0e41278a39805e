"""Alert e-mail over STARTTLS with AUTH against a real SMTP server (aiosmtpd) that requires both: the
certificate is verified against the configured CA, a wrong password or a plain-text login is refused."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_room.config import Settings
from control_room.loops.deliveries import DeliveryError, send_email
from tests.alerts.conftest import free_port

USER, PASSWORD = "alerts", "s3cret-for-tests"
PAYLOAD = {"subject": "[CRITICAL] FIRING: test", "text": "the body"}


@dataclass
class TlsMailbox:
    """Accepts mail only after STARTTLS and a login; records what it saw."""

    messages: list[Message] = field(default_factory=list)
    tls_sessions: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tls_sessions += session.ssl is not None
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 235 or 535


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is also the CA the client trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class TlsServer:
    port: int
    mailbox: TlsMailbox
    ca_file: Path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox, port = TlsMailbox(), free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        authenticator=authenticate, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    yield TlsServer(port, mailbox, cert)
    controller.stop()


def settings(server: TlsServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_starttls": True, "smtp_username": USER,
        "smtp_password": PASSWORD, "smtp_ca_file": str(server.ca_file), "smtp_from": "alerts@test.example",
    }  # fmt: skip
    return Settings(**{**values, **overrides})


def test_starttls_and_auth_deliver(tls_server: TlsServer) -> None:
    send_email(settings(tls_server), "oncall@test.example", PAYLOAD)
    [mail] = tls_server.mailbox.messages
    assert mail["Subject"] == PAYLOAD["subject"] and mail["To"] == "oncall@test.example"
    assert tls_server.mailbox.tls_sessions == 1


def test_a_wrong_password_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(DeliveryError, match="535"):
        send_email(settings(tls_server, smtp_password="wrong"), "oncall@test.example", PAYLOAD)
    assert tls_server.mailbox.messages == []


def test_no_starttls_means_no_login(tls_server: TlsServer) -> None:
    with pytest.raises(DeliveryError, match=r"STARTTLS|not supported"):
        send_email(settings(tls_server, smtp_starttls=False), "oncall@test.example", PAYLOAD)
    assert tls_server.mailbox.messages == []


def test_an_untrusted_certificate_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        send_email(settings(tls_server, smtp_ca_file=None), "oncall@test.example", PAYLOAD)
    assert tls_server.mailbox.messages == []
