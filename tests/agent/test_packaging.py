"""The agent installs on its own (packaging/executor-agent) without any of the control room's dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from control_room.config import PROJECT_ROOT
from tests.live import LiveServer, Provisioner

UV = Path(sys.executable).with_name("uv")
PACKAGE_DIR = PROJECT_ROOT / "packaging" / "executor-agent"
CONTROL_ROOM_ONLY = ("fastapi", "reflex", "psycopg", "sqlalchemy", "sqlmodel", "uvicorn", "boto3", "control_room")


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only packaging/executor-agent installed (from uv's cache when it has everything)."""
    if not UV.exists():
        pytest.fail(f"{UV} not found: `make install-dev` installs uv into the virtualenv")
    venv = tmp_path_factory.mktemp("agent-venv") / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(UV), "pip", "install", "-q", "--python", str(python), str(PACKAGE_DIR)]
    # Offline first (no index traffic); a cold cache falls back to the index.
    if subprocess.run([*install, "--offline"], capture_output=True, timeout=300).returncode != 0:
        subprocess.run(install, check=True, timeout=600)
    return venv


def test_the_standalone_agent_has_none_of_the_control_rooms_dependencies(agent_venv: Path) -> None:
    python = agent_venv / "bin" / "python"
    help_text = subprocess.run(
        [str(agent_venv / "bin" / "lakehouse-executor"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "run" in help_text and "check" in help_text
    probe = "import importlib.util, sys; print(','.join(n for n in sys.argv[1:] if importlib.util.find_spec(n)))"
    found = subprocess.run(
        [str(python), "-c", probe, *CONTROL_ROOM_ONLY], capture_output=True, text=True, check=True, cwd=agent_venv
    ).stdout.strip()
    assert found == "", f"installed with the agent: {found}"
    listed = subprocess.run(
        [str(UV), "pip", "list", "--python", str(python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "lakehouse-executor==0.1.0" in listed
    assert not any(name in listed for name in ("fastapi", "reflex", "psycopg"))


def test_the_standalone_agent_checks_a_real_control_plane(
    agent_venv: Path, live_api: LiveServer, provision: Provisioner
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update(LAKEHOUSE_EXECUTOR_URL=live_api.base_url, LAKEHOUSE_EXECUTOR_TOKEN=provision.executor_token("packaged"))
    out = subprocess.run(
        [str(agent_venv / "bin" / "lakehouse-executor"), "check", "--pool", "packaged"],
        capture_output=True,
        text=True,
        env=env,
        cwd=agent_venv,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "control plane: reachable" in out.stdout
    assert "token: valid" in out.stdout and "pool packaged" in out.stdout
    assert "engine shell: yes [runs]" in out.stdout and "engine python: yes [runs]" in out.stdout
    wrong = subprocess.run(
        [str(agent_venv / "bin" / "lakehouse-executor"), "check"],
        capture_output=True,
        text=True,
        env={**env, "LAKEHOUSE_EXECUTOR_TOKEN": "lhx_revoked-or-unknown"},
        cwd=agent_venv,
        timeout=60,
    )
    assert wrong.returncode == 1 and "token: refused" in wrong.stdout
    assert "lhx_revoked-or-unknown" not in wrong.stdout + wrong.stderr
