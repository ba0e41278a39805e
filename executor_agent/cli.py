"""``lakehouse-executor``: ``run`` an agent, or ``check`` that it can reach the control room and run engines.

Flags override the ``LAKEHOUSE_EXECUTOR_*`` environment. Prefer ``LAKEHOUSE_EXECUTOR_TOKEN`` to
``--token``: a command line is visible to every user of the machine (``ps``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from pydantic import ValidationError

from executor_agent import __version__
from executor_agent.client import ClientError, ControlPlaneUnavailable, ExecutorClient
from executor_agent.config import AgentSettings
from executor_agent.engines import EngineNotAvailable, discover_engines, engine_statuses
from executor_agent.processes import refuse_inspection
from executor_agent.runner import Agent, FatalAgentError
from executor_agent.spool import SpoolBusy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse-executor",
        description="Lakehouse executor agent: claims tasks from the control room and runs them on engines.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,check}")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--url", help="control room base URL (LAKEHOUSE_EXECUTOR_URL)")
        sub.add_argument("--token", help="executor token; prefer the LAKEHOUSE_EXECUTOR_TOKEN environment variable")
        sub.add_argument("--pool", help="refuse to start unless the token belongs to this pool")
        sub.add_argument("--labels", help="comma-separated labels this agent offers")
        sub.add_argument("--engines", help="comma-separated engines to run (default: all available)")

    run = commands.add_parser("run", help="claim and run tasks until stopped (SIGTERM: finish, then hand back)")
    common(run)
    run.add_argument("--concurrency", type=int, help="tasks run at the same time")
    run.add_argument("--spool-dir", help="durable queue folder (one agent per folder)")
    run.add_argument("--work-dir", help="where attempts' work folders are created")
    run.add_argument("--grace-period", type=float, dest="grace_period_s", help="seconds running tasks get on SIGTERM")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")

    check = commands.add_parser("check", help="check connectivity, the token and the engines found")
    common(check)
    return parser


def _settings(args: argparse.Namespace) -> AgentSettings:
    overrides: dict[str, Any] = {}
    for name in (
        "url",
        "token",
        "pool",
        "labels",
        "engines",
        "concurrency",
        "spool_dir",
        "work_dir",
        "grace_period_s",
        "log_level",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return AgentSettings(**overrides)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s executor %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # httpx logs every request at INFO; the agent logs what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"LAKEHOUSE_EXECUTOR_{field.upper()} / --{field.replace('_', '-')}: {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def run_command(settings: AgentSettings) -> int:
    """``lakehouse-executor run``: work until SIGTERM/SIGINT (twice: stop running tasks at once)."""
    _configure_logging(settings.log_level)
    try:
        settings.require_token()
        agent = Agent(settings)
    except (ValueError, EngineNotAvailable, FatalAgentError, SpoolBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        agent.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if not refuse_inspection():
        print("warning: tasks running as this user can read the agent's token from /proc", file=sys.stderr)
    return agent.run()


def check_command(settings: AgentSettings) -> int:
    """``lakehouse-executor check``: reachable, token valid (registers), engines found; exit 1 on any failure."""
    ok = True
    try:
        token = settings.require_token()
    except ValueError as exc:
        print(f"token: {exc}")
        return EXIT_FAILED
    with ExecutorClient(settings.url, token, timeout_s=10, retry_attempts=2, backoff_s=0.5) as client:
        try:
            health = client.health()
            print(f"control plane: reachable at {settings.url} (schema {health.schema_version})")
        except (ControlPlaneUnavailable, ClientError) as exc:
            print(f"control plane: NOT reachable at {settings.url}: {exc}")
            return EXIT_FAILED
        statuses = engine_statuses()
        try:
            chosen = discover_engines(settings.engines)
        except EngineNotAvailable as exc:
            print(f"engines: {exc}")
            chosen, ok = {}, False
        try:
            registration = client.executors.register(
                engines=sorted(chosen),
                labels=settings.labels,
                max_concurrency=settings.concurrency,
                hostname=socket.gethostname(),
            )
            print(f"token: valid (executor {registration.name}, pool {registration.pool})")
            if settings.pool and registration.pool != settings.pool:
                print(f"pool: the token belongs to {registration.pool!r}, not {settings.pool!r}")
                ok = False
        except (ControlPlaneUnavailable, ClientError) as exc:
            print(f"token: refused: {exc}")
            ok = False
    for status in statuses:
        mark = "yes" if status.available else f"no ({status.reason})"
        chosen_mark = " [runs]" if status.name in chosen else ""
        print(f"engine {status.name}: {mark}{chosen_mark}")
    if not chosen:
        print("engines: none would run")
        ok = False
    return EXIT_OK if ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"error: {_explain(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check":
        return check_command(settings)
    return run_command(settings)


if __name__ == "__main__":
    raise SystemExit(main())
