"""The demo's outbox (control_room/demo_outbox.py): the alert sender's own e-mail and Slack sends land in its
files; what is configured already is left alone. `lakehouse run` starting it is covered by tests/e2e/test_home.py."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from pathlib import Path

import httpx
import pytest

from control_room.config import Settings
from control_room.demo_outbox import DEMO_SLACK_CHANNELS, DemoOutbox
from control_room.loops.deliveries import send_email

EXAMPLE_CHANNELS = Path(__file__).resolve().parents[2] / "examples" / "bundle" / "alert_channels.yaml"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[DemoOutbox]:
    box = DemoOutbox(tmp_path / "outbox").start()
    try:
        yield box
    finally:
        box.stop()


def test_alert_email_sent_by_the_sender_is_kept_as_a_message_file(outbox: DemoOutbox) -> None:
    env = outbox.environment({})
    settings = Settings(
        smtp_host=env["LAKEHOUSE_SMTP_HOST"], smtp_port=int(env["LAKEHOUSE_SMTP_PORT"]), smtp_starttls=False
    )
    send_email(settings, "oncall@demo.example", {"subject": "[CRITICAL] prod-run-failed", "text": "nightly failed"})
    (kept,) = sorted(outbox.mail_dir.glob("*.eml"))
    message = email.message_from_bytes(kept.read_bytes(), policy=policy.default)
    assert message["To"] == "oncall@demo.example"
    assert message["Subject"] == "[CRITICAL] prod-run-failed"
    assert message.get_content().strip() == "nightly failed"


def test_slack_messages_are_kept_per_channel_and_bad_ones_get_slacks_error_words(outbox: DemoOutbox) -> None:
    url = outbox.slack_url("data-incidents")
    assert httpx.post(url, json={"text": "run failed"}).text == "ok"
    assert httpx.post(url, json={"text": "run failed again"}).status_code == 200
    kept = sorted((outbox.slack_dir / "data-incidents").glob("*.json"))
    assert [path.read_text(encoding="utf-8").count("run failed") for path in kept] == [1, 1]
    assert "again" in kept[1].read_text(encoding="utf-8")  # arrival order

    assert httpx.post(url, content=b"{not json").text == "invalid_payload"
    assert httpx.post(url, json={"username": "x"}).status_code == 400
    nowhere = httpx.post(outbox.slack_url("elsewhere"), json={"text": "x"})
    assert (nowhere.status_code, nowhere.text) == (404, "no_service")
    assert len(list((outbox.slack_dir / "data-incidents").glob("*.json"))) == 2


def test_only_what_is_not_configured_points_at_the_outbox(outbox: DemoOutbox) -> None:
    everything = outbox.environment({})
    assert everything["LAKEHOUSE_SMTP_STARTTLS"] == "false"
    assert set(DEMO_SLACK_CHANNELS.values()) <= set(everything)

    configured = {"LAKEHOUSE_SMTP_HOST": "mail.example.com", "DEMO_SLACK_DATA_INCIDENTS_URL": "https://hooks.example"}
    left = outbox.environment(configured)
    assert "LAKEHOUSE_SMTP_HOST" not in left and "LAKEHOUSE_SMTP_PORT" not in left
    assert left == {"DEMO_SLACK_DATA_PLATFORM_URL": outbox.slack_url("data-platform")}


def test_the_demo_bundle_declares_the_channels_the_outbox_serves() -> None:
    text = EXAMPLE_CHANNELS.read_text(encoding="utf-8")
    for channel, variable in DEMO_SLACK_CHANNELS.items():
        assert f"- name: {channel}\n    kind: slack\n    url_env: {variable}\n" in text
