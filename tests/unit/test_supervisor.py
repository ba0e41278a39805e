"""Pieces of `lakehouse run` that need no processes: child environment, URL display, preflight checks."""

from __future__ import annotations

import socket

import pytest

from control_room.supervisor import (
    TOOLS_BIN,
    SupervisorError,
    describe_url,
    ensure_port_free,
    find_bun,
    web_server_command,
    web_server_env,
)


def test_web_server_env_points_at_the_database_and_local_bun_and_stays_quiet() -> None:
    env = web_server_env("postgresql://u:pw@db:5432/lakehouse", base={"PATH": "/usr/bin"})
    assert env["LAKEHOUSE_DATABASE_URL"] == "postgresql://u:pw@db:5432/lakehouse"
    assert env["PATH"].split(":")[0] == str(TOOLS_BIN)
    assert env["REFLEX_TELEMETRY_ENABLED"] == "false"
    assert env["REFLEX_CHECK_LATEST_VERSION"] == "false"
    assert env["REFLEX_USE_SYSTEM_BUN"] == "true"
    assert env["NPM_CONFIG_REGISTRY"] == "https://registry.npmjs.org"


def test_web_server_env_keeps_an_operators_npm_mirror() -> None:
    env = web_server_env("postgresql:///x", base={"NPM_CONFIG_REGISTRY": "https://npm.corp.example"})
    assert env["NPM_CONFIG_REGISTRY"] == "https://npm.corp.example"


def test_web_server_serves_ui_and_api_on_one_port_in_prod_mode() -> None:
    command = web_server_command("127.0.0.1", 3123)
    assert command[1:4] == ["-m", "reflex", "run"]
    assert command[4:6] == ["--env", "prod"]
    assert command[command.index("--frontend-port") + 1] == "3123"
    assert command[command.index("--backend-port") + 1] == "3123"
    assert command[command.index("--backend-host") + 1] == "127.0.0.1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://admin:hunter2@db.example.supabase.co:6543/postgres", "db.example.supabase.co:6543/postgres"),
        ("postgresql://postgres:@/lakehouse?host=/srv/pgdata", "/srv/pgdata:5432/lakehouse"),
    ],
)
def test_describe_url_never_shows_credentials(url: str, shown: str) -> None:
    assert describe_url(url) == shown
    assert "hunter2" not in describe_url(url)


def test_missing_bun_is_refused_with_the_install_command() -> None:
    with pytest.raises(SupervisorError, match=r"npm install --prefix \.tools bun@1\.4\.5"):
        find_bun("/nonexistent")


def test_busy_port_is_refused_naming_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SupervisorError, match="LAKEHOUSE_PORT"):
            ensure_port_free("127.0.0.1", port)
