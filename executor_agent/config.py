"""The agent's one typed settings object (environment prefix ``LAKEHOUSE_EXECUTOR_``).

The pool is not a setting: it comes from the executor token, server-side. Heartbeat and lease timing
come from the control plane's answer to ``registerExecutor``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EXECUTOR_TOKEN_PREFIX = "lhx_"
USER_TOKEN_PREFIX = "lhu_"
DEFAULT_STATE_DIR = Path.home() / ".lakehouse-executor"


def _split_list(value: Any) -> Any:
    # "a,b" and '["a", "b"]' both work from the environment or a flag.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class AgentSettings(BaseSettings):
    """Everything an executor agent reads from its environment (or the CLI flags that override it)."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_EXECUTOR_", extra="ignore")

    url: str = Field(
        default="http://127.0.0.1:3000",
        description="Base URL of the control room (the API lives under /api/v1 there).",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Executor token (lhx_…) from `lakehouse executors token create`; it names the pool.",
    )
    pool: str | None = Field(
        default=None,
        description="Expected pool: when set, the agent refuses to start if the token belongs to another pool.",
    )
    labels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Labels this agent offers (tasks may require some), comma-separated."
    )
    engines: Annotated[list[str] | None, NoDecode] = Field(
        default=None, description="Engines to run, comma-separated; unset: every engine available on this machine."
    )
    concurrency: int = Field(default=4, ge=1, le=1000, description="Tasks run at the same time.")
    spool_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "spool",
        description="Durable queue of unsent events, artifacts, reports and outcomes; one agent per folder.",
    )
    work_dir: Path = Field(
        default=DEFAULT_STATE_DIR / "work", description="Each attempt runs in a fresh folder under this one."
    )
    keep_work_dirs: bool = Field(default=False, description="Keep attempts' work folders after they finish.")
    grace_period_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long running tasks may finish before being stopped."
    )
    claim_wait_s: float = Field(
        default=10.0, ge=0, le=60, description="Claim long-poll (capped by the control plane's maximum)."
    )
    executor_heartbeat_s: float = Field(
        default=5.0, gt=0, description="Executor heartbeat period (carries cancel requests); at most the task one."
    )
    flush_interval_s: float = Field(
        default=0.2, gt=0, le=0.2, description="Buffered events are sent at least this often."
    )
    kill_grace_s: float = Field(
        default=2.0, ge=0, description="Between SIGTERM and SIGKILL when a task's process group is stopped."
    )
    request_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    retry_attempts: int = Field(
        default=5, ge=1, le=100, description="Tries of one request on network errors and 5xx before giving up."
    )
    retry_backoff_s: float = Field(default=0.5, gt=0, description="First retry delay (doubles, with jitter).")
    retry_backoff_max_s: float = Field(default=10.0, gt=0, description="Longest delay between two retries.")
    report_wait_s: float = Field(
        default=10.0, ge=0, description="How long an engine's report() waits for the answer before it is spooled."
    )
    log_level: str = Field(default="INFO", description="Agent log level (DEBUG, INFO, WARNING, ERROR).")
    task_user: str | None = Field(
        default=None,
        description="Run task processes as this user (name or uid; the agent must run as root), so a task cannot "
        "read the agent's token, spool or memory. Unset: tasks run as the agent's own user.",
    )

    @field_validator("task_user")
    @classmethod
    def _known_user(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        import pwd

        try:
            entry = pwd.getpwuid(int(value)) if value.strip().isdigit() else pwd.getpwnam(value.strip())
        except KeyError as exc:
            raise ValueError(f"no such user {value!r} on this machine") from exc
        if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
            raise ValueError(f"running tasks as {entry.pw_name} needs the agent to run as root")
        return entry.pw_name

    @field_validator("labels", "engines", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL of the control room, got {value!r}")
        return url.removesuffix("/api/v1")

    @field_validator("token")
    @classmethod
    def _executor_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token.startswith(USER_TOKEN_PREFIX):
            raise ValueError(
                "this is a user API token (lhu_…); the agent needs an executor token (lhx_…): "
                "`lakehouse executors token create --name <name> --pool <pool>`"
            )
        if any(ch.isspace() for ch in token):
            raise ValueError("must not contain spaces or line breaks")
        return SecretStr(token)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    def require_token(self) -> str:
        """The token's value; ValueError naming the setting when none was given."""
        token = self.token.get_secret_value()
        if not token:
            raise ValueError(
                "no executor token: set LAKEHOUSE_EXECUTOR_TOKEN (or pass --token) to a token from "
                "`lakehouse executors token create --name <name> --pool <pool>`"
            )
        return token
