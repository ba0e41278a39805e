"""The deliveries sender: drains the alert outbox to e-mail (SMTP), Slack and signed webhooks.

Each claimed delivery is sent in its own task with a timeout, so a slow or failing channel never holds
up the others or the evaluator; failures back off exponentially and end as dead letters.

Webhook signature (for receivers): headers ``X-Lakehouse-Timestamp`` (Unix seconds) and
``X-Lakehouse-Signature: sha256=<hex>`` where hex = HMAC-SHA256(secret, f"{timestamp}.{raw body}").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg

from control_room.config import Settings, get_settings
from control_room.db import notify
from control_room.db.connection import connect_async
from control_room.db.tables import AlertDelivery
from control_room.services import deliveries, notifications

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Lakehouse-Signature"
TIMESTAMP_HEADER = "X-Lakehouse-Timestamp"
DELIVERIES_CHANNEL = "lakehouse_deliveries"  # no payload: the outbox got rows (20261204000510_*.sql)
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 3600.0


class DeliveryError(RuntimeError):
    """A send failed in a way worth retrying (or a configuration problem, retried until fixed)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value of a webhook body: ``sha256=`` + HMAC-SHA256(secret, "timestamp.body")."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance_s: float = 300) -> bool:
    """The receiver's check: signature matches and the timestamp is recent (replay protection)."""
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` tries: exponential with jitter, capped."""
    delay: float = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not crypto)


def send_email(settings: Settings, to: str, payload: dict[str, Any]) -> None:
    """Send one e-mail through the configured SMTP server (STARTTLS and AUTH when configured)."""
    if not settings.smtp_host:
        raise DeliveryError("LAKEHOUSE_SMTP_HOST is not set: configure the SMTP server to send alert e-mail")
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = payload["subject"]
    msg.set_content(payload["text"])
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=settings.smtp_ca_file))
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {exc}") from exc


def digest_groups(rows: list[AlertDelivery]) -> list[list[AlertDelivery]]:
    """Claimed deliveries as sends: the e-mails held for one address's daily digest together, the rest alone."""
    sends: list[list[AlertDelivery]] = []
    digests: dict[str, list[AlertDelivery]] = {}
    for row in rows:
        if row.channel == "email" and row.held_reason == notifications.DIGEST_REASON:
            if row.target not in digests:
                digests[row.target] = []
                sends.append(digests[row.target])
            digests[row.target].append(row)
        else:
            sends.append([row])
    return sends


def as_one(group: list[AlertDelivery]) -> AlertDelivery:
    """The delivery to send for a group: itself, or a digest e-mail of all of them."""
    if len(group) == 1:
        return group[0]
    ordered = sorted(group, key=lambda row: row.created_at)
    digest = notifications.digest_payload([row.payload for row in ordered])
    return AlertDelivery.model_validate({**ordered[0].model_dump(), "payload": digest})


class DeliverySender:
    """Claims due deliveries and sends each concurrently; one instance per replica."""

    def __init__(self, settings: Settings | None = None, *, batch: int = 50, send_timeout: float = 30.0) -> None:
        self.settings = settings or get_settings()
        self.batch = batch
        self.send_timeout = send_timeout
        self._http = httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send_due(self, conn: psycopg.AsyncConnection, now: datetime) -> dict[str, int]:
        """Send everything due at ``now``; counts of outcomes ('sent', 'pending' = retry later, 'dead')."""
        claimed = await deliveries.claim_due(conn, now=now, limit=self.batch)
        groups = digest_groups(claimed)
        results = await asyncio.gather(*(self._attempt(conn, as_one(group)) for group in groups))
        outcomes: dict[str, int] = {}
        for group, error in zip(groups, results, strict=True):
            for row in group:
                retry_at = now + timedelta(seconds=backoff(row.attempts))
                state = await deliveries.finish(
                    conn, delivery_id=row.id, ok=error is None, error=error, now=now, retry_at=retry_at
                )
                outcomes[state or "lost"] = outcomes.get(state or "lost", 0) + 1
            if error:
                log.warning(
                    "delivery %s (%s to %s, %d message(s)) attempt %d failed: %s",
                    group[0].id,
                    group[0].channel,
                    group[0].target,
                    len(group),
                    group[0].attempts,
                    error,
                )
        return outcomes

    async def _attempt(self, conn: psycopg.AsyncConnection, row: AlertDelivery) -> str | None:
        try:
            await asyncio.wait_for(self._send(conn, row), self.send_timeout)
        except TimeoutError:
            return f"timed out after {self.send_timeout:.0f} s"
        except DeliveryError as exc:
            return str(exc)
        except Exception as exc:  # a bug in one send must not stop the others
            log.exception("delivery %s failed unexpectedly", row.id)
            return f"{type(exc).__name__}: {exc}"
        return None

    async def _send(self, conn: psycopg.AsyncConnection, row: AlertDelivery) -> None:
        channel, target, payload = row.channel, row.target, row.payload
        if channel == "email":
            await asyncio.to_thread(send_email, self.settings, target, payload)
            return
        url, secret = target, None
        if not target.startswith(("http://", "https://")):
            named = await deliveries.channel(conn, org_id=row.org_id, name=target)
            if named is None:
                raise DeliveryError(f"no alert channel named {target!r}: add it to the bundle's alert_channels")
            url = os.environ.get(named.url_env or "", "")
            if not url:
                raise DeliveryError(f"channel {target!r}: environment variable {named.url_env} is not set")
            secret = os.environ.get(named.secret_env) if named.secret_env else None
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "lakehouse-control-room"}
        if channel == "webhook":
            timestamp = str(int(datetime.now(UTC).timestamp()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers["X-Lakehouse-Delivery"] = str(row.id)
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{channel} {url}: {exc}") from exc
        if response.status_code >= 300:
            raise DeliveryError(f"{channel} {url} answered {response.status_code}: {response.text[:200]}")


async def _until_queued(listen: psycopg.AsyncConnection, within: float) -> None:
    """Wait for a NOTIFY that something was queued (sent when the outbox gets rows), at most ``within`` s:
    a firing is sent the moment it commits; the interval only paces retries and held messages."""
    with contextlib.suppress(TimeoutError):
        async for _ in listen.notifies(timeout=within, stop_after=1):
            pass


async def run_delivery_sender(database_url: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Forever: send due deliveries, then wait a moment (or not at all while there is more)."""
    settings = get_settings()
    sender = DeliverySender(settings)
    try:
        while True:
            try:
                async with await connect_async(database_url) as listen, await connect_async(database_url) as conn:
                    await notify.listen(listen, DELIVERIES_CHANNEL)
                    while True:
                        outcomes = await sender.send_due(conn, clock())
                        if sum(outcomes.values()) < sender.batch:
                            await _until_queued(listen, settings.alerts_delivery_interval_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery sender failed; retrying")
                await asyncio.sleep(settings.alerts_delivery_interval_seconds)
    finally:
        await sender.aclose()
