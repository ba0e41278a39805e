"""Agent settings (clear errors naming the setting) and the spool's durability rules, without a server."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from executor_agent.cli import main
from executor_agent.config import AgentSettings
from executor_agent.spool import Spool, SpoolBusy

TASK, LEASE, RUN = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_lists_come_comma_separated_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_LABELS", "gpu, eu-west ,")
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_ENGINES", '["shell", "python"]')
    monkeypatch.setenv("LAKEHOUSE_EXECUTOR_URL", "http://cr.example:3000/api/v1/")
    settings = AgentSettings()
    assert settings.labels == ["gpu", "eu-west"]
    assert settings.engines == ["shell", "python"]
    assert settings.url == "http://cr.example:3000"


def test_a_user_token_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(ValidationError, match=r"user API token.*executor token \(lhx_"):
        AgentSettings(token="lhu_abc")


def test_bad_settings_name_the_variable_and_never_echo_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--url", "ftp://nowhere", "--token", "lhx_secret-value", "--concurrency", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "LAKEHOUSE_EXECUTOR_URL / --url" in err and "LAKEHOUSE_EXECUTOR_CONCURRENCY / --concurrency" in err
    assert "lhx_secret-value" not in err


def test_run_without_a_token_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("LAKEHOUSE_EXECUTOR_TOKEN", raising=False)
    assert main(["run", "--spool-dir", str(tmp_path / "s")]) == 2
    assert "LAKEHOUSE_EXECUTOR_TOKEN" in capsys.readouterr().err


def record(spool: Spool, attempt: int = 1) -> None:
    spool.record_attempt(task_id=TASK, attempt=attempt, lease_token=LEASE, run_id=RUN, task_key="k", engine="shell")


def test_event_seq_is_contiguous_per_attempt_and_survives_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    record(spool)
    record(spool, attempt=2)
    assert [spool.add_event(TASK, 1, LEASE, {"type": "log"}) for _ in range(3)] == [0, 1, 2]
    assert spool.add_event(TASK, 2, LEASE, {"type": "log"}) == 0
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.add_event(TASK, 1, LEASE, {"type": "log"}) == 3
    assert [e.seq for e in reopened.events_of(TASK, 1, 100)] == [0, 1, 2, 3]
    assert json.loads(json.dumps(reopened.events_of(TASK, 1, 1)[0].body))["seq"] == 0
    with pytest.raises(KeyError, match="not held"):
        reopened.add_event(uuid.uuid4(), 1, LEASE, {"type": "log"})
    reopened.close()


def test_the_final_word_waits_for_the_attempts_events_and_uploads(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    record(spool)
    spool.add_event(TASK, 1, LEASE, {"type": "log"})
    source = tmp_path / "a.txt"
    source.write_text("hello")
    staged = spool.stage_file(source)
    upload = spool.add_outbox(TASK, 1, LEASE, "upload", {"name": "a.txt"}, staged.path)
    final = spool.finish_attempt(TASK, 1, LEASE, "finalize", {"outcome": "succeeded"})
    assert spool.blocks_final(TASK, 1, final)
    spool.delete_events([e.id for e in spool.events_of(TASK, 1, 10)])
    assert spool.blocks_final(TASK, 1, final), "the upload is still queued"
    spool.remove_outbox(upload)
    assert not staged.path.exists(), "a finished upload's staged copy is removed"
    assert not spool.blocks_final(TASK, 1, final)
    spool.forget_attempt(TASK, 1)
    assert spool.is_empty() and spool.attempts() == []
    spool.close()


def test_staging_copies_and_hashes_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    source = tmp_path / "data.bin"
    source.write_bytes(b"x" * 3_000_000)
    staged = spool.stage_file(source)
    source.write_bytes(b"changed")
    assert staged.size_bytes == 3_000_000 and staged.path.read_bytes() == b"x" * 3_000_000
    assert staged.sha256 == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    orphan = spool.files_dir / "left-by-a-crash.bin"
    orphan.write_bytes(b"?")
    assert spool.remove_orphan_files() == 2  # nothing was queued for either file
    spool.close()


def test_two_agents_cannot_share_a_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    probe = (
        "import sys; from pathlib import Path; from executor_agent.spool import Spool, SpoolBusy\n"
        "try:\n    Spool(Path(sys.argv[1]))\nexcept SpoolBusy as exc:\n    print('busy:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert "busy:" in out.stdout and "LAKEHOUSE_EXECUTOR_SPOOL_DIR" in out.stdout
    spool.close()
    Spool(tmp_path).close()  # free again once the first agent is gone
    held = Spool(tmp_path)
    try:
        with pytest.raises(SpoolBusy):
            Spool(tmp_path)
    finally:
        held.close()
