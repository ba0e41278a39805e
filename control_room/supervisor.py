"""`lakehouse run`: Postgres (embedded unless configured), migrations, demo data, the MLflow tracking
server (unless MLFLOW_TRACKING_URI is set), then UI + API on one port.

Everything started here is stopped on Ctrl-C or SIGTERM: the web server's whole process group (Reflex,
its Granian workers, any bun build still running), the MLflow server, then the embedded Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict

from control_room.bundle.loader import display_path
from control_room.config import MIGRATIONS_DIR, PROJECT_ROOT, SEED_FILE, Settings, get_settings
from control_room.db.connection import connect_async
from control_room.db.embedded import EmbeddedPostgres, start_embedded
from control_room.db.migrate import MigrationError, migrate
from control_room.services.auth import rotate_executor_token
from control_room.services.errors import NotFound, ServiceError
from control_room.services.orgs import org_for_local_agent
from control_room.services.users import create_demo_admin

if TYPE_CHECKING:
    from control_room.demo_outbox import DemoOutbox

EMBEDDED_DATABASE = "lakehouse"
TOOLS_BIN = PROJECT_ROOT / ".tools" / "node_modules" / ".bin"
BUN_MIN_VERSION = (1, 4, 4)
HEALTH_PATH = "/api/v1/health"
# A deadline, not a target: a first run installs the frontend packages (about a minute here).
READY_TIMEOUT_SECONDS = 600.0
HEALTH_POLL_SECONDS = 0.25
# Per stop signal: SIGINT lets Reflex/Granian shut down cleanly, SIGTERM and SIGKILL follow if needed.
STOP_GRACE_SECONDS = {signal.SIGINT: 10.0, signal.SIGTERM: 5.0, signal.SIGKILL: 5.0}

Printer = Callable[[str], None]


class SupervisorError(RuntimeError):
    """Startup cannot continue; the message says what failed and what to do."""


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: unwind and stop everything."""


@dataclass
class ControlPlaneDatabase:
    """The database the control room runs on, and the embedded server behind it if any."""

    url: str
    embedded: EmbeddedPostgres | None = None
    was_running: bool = False

    def describe(self) -> str:
        """Where the database is, for progress lines (never includes a password)."""
        if self.embedded is not None:
            return f"embedded, {display_path(self.embedded.pgdata)}"
        return f"external, {describe_url(self.url)}"


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a Postgres URL, without user or password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable LAKEHOUSE_DATABASE_URL>"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or 'postgres'}"


def _embedded_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    if pid <= 0:  # a negative pid marks a standalone backend (initdb), not a server
        return False
    try:
        name: str = psutil.Process(pid).name()
    except psutil.Error:
        return False
    return name.startswith("postgres")


def open_control_plane_database(settings: Settings) -> ControlPlaneDatabase:
    """LAKEHOUSE_DATABASE_URL when set, else the embedded server under data_dir (started if needed)."""
    if settings.database_url:
        return ControlPlaneDatabase(url=settings.database_url)
    pgdata = settings.pgdata_dir
    was_running = _embedded_running(pgdata)
    try:
        embedded = start_embedded(pgdata)
        url = embedded.ensure_database(EMBEDDED_DATABASE)
    except Exception as exc:
        raise SupervisorError(
            f"embedded Postgres under {pgdata} did not start: {exc}. See {pgdata / 'log'}; "
            "if the directory is damaged and holds nothing you need, delete it to start fresh."
        ) from exc
    return ControlPlaneDatabase(url=url, embedded=embedded, was_running=was_running)


@contextlib.contextmanager
def control_plane_database(settings: Settings) -> Iterator[ControlPlaneDatabase]:
    """For one-shot commands: the database, stopping the embedded server afterwards only if we started it."""
    database = open_control_plane_database(settings)
    try:
        yield database
    finally:
        if database.embedded is not None and not database.was_running:
            database.embedded.stop()


def apply_migrations(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """``migrate`` with connection failures turned into an actionable SupervisorError."""
    try:
        return migrate(url, directory)
    except psycopg.OperationalError as exc:
        raise SupervisorError(
            f"cannot connect to Postgres at {describe_url(url)}: {str(exc).strip()}. "
            "Check LAKEHOUSE_DATABASE_URL (unset it to use the embedded Postgres)."
        ) from exc


def find_bun(path: str) -> Path:
    """The bun Reflex will use; refuses to go on without one, since Reflex would download it instead."""
    found = shutil.which("bun", path=path)
    hint = "run `make run` (installs it into .tools/) or `npm install --prefix .tools bun@1.4.5`"
    if not found:
        raise SupervisorError(f"bun >= 1.4.4 is needed to build the web UI and was not found: {hint}")
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30, check=True)
        version = tuple(int(part) for part in out.stdout.strip().split("-")[0].split(".")[:3])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SupervisorError(f"{found} does not run ({exc}): {hint}") from exc
    if version < BUN_MIN_VERSION:
        raise SupervisorError(f"{found} is bun {'.'.join(map(str, version))}, older than 1.4.4: {hint}")
    return Path(found)


def ensure_port_free(host: str, port: int) -> None:
    """Fail before starting anything when the port is taken (Reflex would only say so after building)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SupervisorError(
                f"port {port} on {host} is not available ({exc.strerror}): stop whatever uses it "
                "or choose another with LAKEHOUSE_PORT=<port>."
            ) from exc


def tools_path(path: str | None = None) -> str:
    """PATH with the project's own tools (bun from npm, in .tools/) first."""
    return os.pathsep.join([str(TOOLS_BIN), os.environ.get("PATH", "") if path is None else path])


def web_server_env(database_url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the Reflex child: our DB URL, local bun first on PATH, nothing phoning home."""
    env = dict(os.environ if base is None else base)
    env["LAKEHOUSE_DATABASE_URL"] = database_url
    env["PATH"] = tools_path(env.get("PATH", ""))
    env["REFLEX_USE_SYSTEM_BUN"] = "true"  # the bun on PATH, never one Reflex downloads
    env["REFLEX_USE_GRANIAN"] = "true"  # otherwise the server depends on whether gunicorn is installed
    env["REFLEX_TELEMETRY_ENABLED"] = "false"
    env["REFLEX_CHECK_LATEST_VERSION"] = "false"
    # Without a registry Reflex probes registry.npmmirror.com to pick the "fastest" one.
    env.setdefault("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def web_server_command(host: str, port: int) -> list[str]:
    """``reflex run`` in production mode: built frontend and backend on one port."""
    return [
        sys.executable, "-m", "reflex", "run",
        "--env", "prod", "--single-port",
        "--frontend-port", str(port), "--backend-port", str(port),
        "--backend-host", host,
    ]  # fmt: skip


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def stop_process_group(process: subprocess.Popen[bytes], out: Printer, name: str = "web server") -> None:
    """Signal the child's whole process group, escalating until nothing in it is left."""
    pgid = process.pid  # start_new_session=True made the child its group's leader
    for sig, grace in STOP_GRACE_SECONDS.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)  # reaps the leader so it does not linger as a zombie
            if process.returncode is not None and not _group_members(pgid):
                return
        if sig != signal.SIGKILL:
            out(f"{name}: still running {grace:.0f} s after {sig.name}, escalating")
    left = ", ".join(str(p.pid) for p in _group_members(pgid))
    out(f"{name}: processes {left} survived SIGKILL (uninterruptible I/O?)")


LOCAL_AGENT_POOL = "default"
# services.demo's DEMO_ORG_SLUG, named here so that importing the supervisor (every `lakehouse` command
# does) does not import the demo loader, the bundle and jsonschema: seconds of start-up per CLI call.
DEMO_ORG_SLUG_FOR_AGENT = "demo"
LOCAL_AGENT_NAME_FILE = "local-agent.name"
# Short enough that Ctrl-C (SIGINT, then 10 s) stops the agent cleanly, leases handed back.
LOCAL_AGENT_DEFAULTS = {"LAKEHOUSE_EXECUTOR_GRACE_PERIOD_S": "3", "LAKEHOUSE_EXECUTOR_CLAIM_WAIT_S": "5"}


def rotate_local_agent_token(database_url: str, data_dir: Path) -> tuple[str, str]:
    """The local agent's executor identity in pool "default" with a fresh token; the old token stops working.

    The identity (its name, kept in the data dir, and its executor row) survives restarts of
    `lakehouse run`: only the token is rotated, so the registry shows one local agent, not one per start.
    It belongs to the demo org (else the oldest org). Returns (name, token); the token is only ever
    handed to the agent through its environment.
    """
    name_file = data_dir / LOCAL_AGENT_NAME_FILE

    async def rotate() -> tuple[str, str]:
        async with await connect_async(database_url) as conn:
            org_id = await org_for_local_agent(conn, preferred_slug=DEMO_ORG_SLUG_FOR_AGENT)
            if org_id is None:
                raise NotFound("there is no org for the local agent; load the demo data or create an org first")
            previous = name_file.read_text(encoding="utf-8").strip() if name_file.exists() else ""
            name = previous or f"local-agent-{secrets.token_hex(3)}"
            try:
                return name, await rotate_executor_token(conn, name=name, pool=LOCAL_AGENT_POOL, org_id=org_id)
            except ServiceError:
                if not previous:
                    raise
                # The remembered name now belongs to another org (a reused data dir): start a new identity.
                name = f"local-agent-{secrets.token_hex(3)}"
                return name, await rotate_executor_token(conn, name=name, pool=LOCAL_AGENT_POOL, org_id=org_id)

    name, token = asyncio.run(rotate())
    data_dir.mkdir(parents=True, exist_ok=True)
    name_file.write_text(name + "\n", encoding="utf-8")
    return name, token


def local_warehouse_file(data_dir: Path) -> Path:
    """The local agent's persistent DuckDB warehouse (shared by its DuckDB, dbt-duckdb and Delta tasks)."""
    return data_dir / "warehouse" / "warehouse.duckdb"


def local_lake_dir(data_dir: Path) -> Path:
    """The local agent's lake folder: Delta, Parquet and CSV tables its DuckDB tasks query by name."""
    return data_dir / "warehouse" / "lake"


def local_agent_env(
    url: str, token: str, data_dir: Path, base: dict[str, str] | None = None, *, tracking_uri: str | None = None
) -> dict[str, str]:
    """Environment of the local agent: no control-room settings (the database URL stays here), its token."""
    source = dict(os.environ if base is None else base)
    env = {k: v for k, v in source.items() if not k.startswith("LAKEHOUSE_") or k.startswith("LAKEHOUSE_EXECUTOR_")}
    for key, value in LOCAL_AGENT_DEFAULTS.items():
        env.setdefault(key, value)
    env.update(
        {
            "LAKEHOUSE_EXECUTOR_URL": url,
            "LAKEHOUSE_EXECUTOR_TOKEN": token,
            "LAKEHOUSE_EXECUTOR_SPOOL_DIR": str(data_dir / "executor" / "spool"),
            "LAKEHOUSE_EXECUTOR_WORK_DIR": str(data_dir / "executor" / "work"),
            # The embedded SQL warehouse lives with the rest of the data, not in the home directory.
            "LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE": str(local_warehouse_file(data_dir)),
            "LAKEHOUSE_EXECUTOR_DUCKDB_DATA_DIR": str(local_lake_dir(data_dir)),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri  # handed on to python and spark tasks
    return env


class Supervisor:
    """Starts the control room's processes in order and owns their shutdown."""

    def __init__(self, settings: Settings, out: Printer, err: Printer) -> None:
        self.settings = settings
        self.out = out
        self.err = err
        self.database: ControlPlaneDatabase | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.tracking: subprocess.Popen[bytes] | None = None
        self.outbox: DemoOutbox | None = None
        self.tracking_uri: str | None = os.environ.get("MLFLOW_TRACKING_URI") or None
        # While a process is being started, a stop signal is held back until we know its handle.
        self._defer_stop = False
        self._pending_stop: int | None = None
        self._embedded_was_running = True  # until we know better, never stop a server we did not start

    def run(self) -> int:
        """Start everything, wait for Ctrl-C/SIGTERM or the web server to exit, stop everything."""
        # Installed explicitly: a shell starting us in the background leaves SIGINT ignored otherwise.
        previous = {sig: signal.signal(sig, self._on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        except SupervisorError as exc:
            self.err(f"error: {exc}")
            return 1
        except (KeyboardInterrupt, StopRequested):
            return 0
        finally:
            # A second Ctrl-C must not abort the shutdown half-way and leave orphans.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            try:
                self._shutdown()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._defer_stop:
            self._pending_stop = signum
            return
        raise StopRequested(signal.Signals(signum).name)

    @contextlib.contextmanager
    def _stop_deferred(self) -> Iterator[None]:
        """Hold back Ctrl-C/SIGTERM while starting a process, so it cannot escape before it is recorded."""
        self._defer_stop = True
        try:
            yield
        finally:
            self._defer_stop = False
        if self._pending_stop is not None:
            raise StopRequested(signal.Signals(self._pending_stop).name)

    def _run(self) -> int:
        settings = self.settings
        started = time.monotonic()
        ensure_port_free(settings.host, settings.port)
        find_bun(tools_path())

        if settings.database_url is None:
            self._embedded_was_running = _embedded_running(settings.pgdata_dir)
        with self._stop_deferred():
            self.database = open_control_plane_database(settings)
        self.out(f"postgres: ready ({self.database.describe()})")

        try:
            applied = apply_migrations(self.database.url)
        except MigrationError as exc:
            hint = ""
            if self.database.embedded is not None:
                hint = (
                    f" For this local embedded database you may instead delete "
                    f"{display_path(self.database.embedded.pgdata)} to start over (its data is lost)."
                )
            raise SupervisorError(f"{exc}{hint}") from exc
        self.out(f"migrations: {len(applied)} applied" if applied else "migrations: up to date")

        if settings.load_demo_data:
            self._load_demo_data(self.database.url)

        self._start_tracking_server(self.database.url)

        self.out("web: building the UI and starting the server (a first run installs frontend packages)")
        web_env = web_server_env(self.database.url)
        if settings.load_demo_data:
            web_env |= self._start_demo_outbox(web_env)
        if self.tracking_uri:
            web_env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        with self._stop_deferred():
            self.web = subprocess.Popen(
                web_server_command(settings.host, settings.port),
                cwd=PROJECT_ROOT,
                env=web_env,
                start_new_session=True,  # its own process group: we forward Ctrl-C and can stop all of it
            )
        url = self._wait_until_healthy(self.web)
        self._wait_for_tracking_server()
        if settings.local_agent:
            self._start_local_agent(self.database.url, url)
        self.out(f"control room: {url}  (ready in {time.monotonic() - started:.1f} s; Ctrl-C stops it)")
        code = self.web.wait()
        self.err(f"error: the web server exited on its own with code {code} (see its output above)")
        return 1

    def _load_demo_data(self, url: str) -> None:
        if not SEED_FILE.exists():
            self.out(f"demo data: skipped ({SEED_FILE.name} not found)")
            return
        try:
            from control_room.services.demo import load_demo_data  # heavy (bundle, jsonschema): only here

            loaded = load_demo_data(url)
        except (psycopg.Error, MigrationError) as exc:
            raise SupervisorError(
                f"loading demo data from {SEED_FILE.name} failed: {str(exc).strip()}. "
                "Set LAKEHOUSE_LOAD_DEMO_DATA=false to start without it."
            ) from exc
        self.out("demo data: loaded" if loaded else "demo data: already present")
        if loaded:
            # The only time the password is known: right after the demo org was created.
            admin = create_demo_admin(url)
            self.out(
                f"demo admin: {admin.email}  password: {admin.password}  "
                f"(shown once; reset with `lakehouse users create-admin --email {admin.email}`)"
            )

    def _start_demo_outbox(self, configured: dict[str, str]) -> dict[str, str]:
        """The demo's alerts delivered to local files: e-mail and Slack not configured here go to the outbox."""
        from control_room.demo_outbox import DemoOutbox  # aiosmtpd: only for the demo

        with self._stop_deferred():
            self.outbox = DemoOutbox(self.settings.data_dir / "outbox").start()
        env = self.outbox.environment(configured)
        kept = [what for what, key in (("e-mail", "LAKEHOUSE_SMTP_HOST"), ("Slack", "DEMO_SLACK_")) if
                any(k.startswith(key) for k in env)]  # fmt: skip
        if kept:
            self.out(f"demo outbox: alert {' and '.join(kept)} kept in {display_path(self.outbox.directory)} "
                     f"(SMTP {self.outbox.host}:{self.outbox.smtp_port})")  # fmt: skip
        return env

    def _start_tracking_server(self, database_url: str) -> None:
        """MLflow: the configured MLFLOW_TRACKING_URI, else a server of our own on the control plane's Postgres."""
        from control_room import tracking_server  # only `lakehouse run` needs it

        if self.tracking_uri:
            self.out(f"mlflow: using MLFLOW_TRACKING_URI {self.tracking_uri}")
            return
        if not self.settings.mlflow_server:
            self.out("mlflow: not started (LAKEHOUSE_MLFLOW_SERVER=false and no MLFLOW_TRACKING_URI)")
            return
        ensure_port_free(self.settings.mlflow_host, self.settings.mlflow_port)
        log_file = self.settings.data_dir / "mlflow" / "server.log"
        try:
            plan = tracking_server.plan_tracking_server(self.settings, database_url)
            with self._stop_deferred():
                self.tracking = tracking_server.start_tracking_server(plan, log_file)
        except (tracking_server.TrackingServerError, psycopg.Error) as exc:
            raise _tracking_failed(exc) from exc
        self.tracking_uri = plan.url
        self.out(f"mlflow: starting ({plan.describe()}; log {display_path(log_file)})")

    def _wait_for_tracking_server(self) -> None:
        """The MLflow server started beside the web build must answer before the agent gets training work."""
        from control_room import tracking_server

        if self.tracking is None or self.tracking_uri is None:
            return
        started = time.monotonic()
        try:
            tracking_server.wait_until_tracking_healthy(self.tracking_uri, self.tracking)
        except tracking_server.TrackingServerError as exc:
            raise _tracking_failed(exc) from exc
        self.out(f"mlflow: ready at {self.tracking_uri} (waited {time.monotonic() - started:.1f} s more)")

    def _start_local_agent(self, database_url: str, control_room_url: str) -> None:
        """One executor agent next to the control room, in its own process group, with a fresh token."""
        try:
            name, token = rotate_local_agent_token(database_url, self.settings.data_dir)
        except (psycopg.Error, ServiceError) as exc:
            raise SupervisorError(
                f"creating the local executor token failed: {str(exc).strip()}. "
                "Set LAKEHOUSE_LOCAL_AGENT=false to start without the local agent."
            ) from exc
        with self._stop_deferred():
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "executor_agent", "run"],
                cwd=PROJECT_ROOT,
                env=local_agent_env(control_room_url, token, self.settings.data_dir, tracking_uri=self.tracking_uri),
                start_new_session=True,  # its own group: Ctrl-C reaches it through us, and stops its tasks too
            )
        self.out(f"executor agent: {name} in pool {LOCAL_AGENT_POOL} (engines found installed; Ctrl-C stops it)")

    def _wait_until_healthy(self, web: subprocess.Popen[bytes]) -> str:
        import httpx  # here only: httpx imports rich and pygments, a second on every CLI command otherwise

        wildcard = self.settings.host in ("0.0.0.0", "::", "")  # noqa: S104  (comparing, not binding)
        host = "127.0.0.1" if wildcard else self.settings.host
        base = f"http://{host}:{self.settings.port}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last = "no answer yet"
        with httpx.Client(timeout=5.0, trust_env=False) as client:  # never via an HTTP proxy
            while time.monotonic() < deadline:
                code = web.poll()
                if code is not None:
                    raise SupervisorError(
                        f"the web server exited with code {code} before becoming healthy (see its output above)"
                    )
                try:
                    response = client.get(base + HEALTH_PATH)
                    if response.status_code == 200:
                        return base
                    last = f"HTTP {response.status_code}: {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(HEALTH_POLL_SECONDS)
        raise SupervisorError(
            f"the web server was not healthy at {base}{HEALTH_PATH} after {READY_TIMEOUT_SECONDS:.0f} s "
            f"(last answer: {last})"
        )

    def _stop_child(self, process: subprocess.Popen[bytes], name: str, what: str) -> None:
        """Stop one child's process group; a failure is reported (naming ``what``), not raised, so the
        shutdown's next steps still run."""
        self.out(f"stopping: {name}")
        try:
            stop_process_group(process, self.out, name)
        except Exception as exc:
            self.err(f"error: stopping {what} (process group {process.pid}): {exc}")

    def _shutdown(self) -> None:
        # Each step runs even when an earlier one failed: a half-stopped supervisor leaves orphans.
        if self.agent is not None:
            # First, while the API still answers: the agent hands back its leases and sends its spool.
            self._stop_child(self.agent, "executor agent", "the executor agent")
            self.agent = None
        if self.web is not None:
            self._stop_child(self.web, "web server", "the web server")
            self.web = None
        if self.outbox is not None:  # after the web server: its sender may be delivering to it
            self.outbox.stop()
            self.outbox = None
        if self.tracking is not None:
            self._stop_child(self.tracking, "mlflow server", "the MLflow server")
            self.tracking = None
        embedded = self.database.embedded if self.database is not None else None
        if embedded is None and not self._embedded_was_running and _embedded_running(self.settings.pgdata_dir):
            # Ctrl-C reached pg_ctl while it was starting the server: the server came up without us.
            with contextlib.suppress(Exception):
                embedded = start_embedded(self.settings.pgdata_dir)
        if embedded is not None:
            self.out("stopping: embedded postgres")
            try:
                embedded.stop()
            except Exception as exc:
                self.err(f"error: stopping the embedded postgres in {embedded.pgdata}: {exc}")
        self.database = None


def _tracking_failed(exc: Exception) -> SupervisorError:
    return SupervisorError(
        f"the MLflow tracking server did not start: {str(exc).strip()}. Set MLFLOW_TRACKING_URI to use "
        "another server, or LAKEHOUSE_MLFLOW_SERVER=false to start without MLflow."
    )


def run() -> int:
    """Entry point of ``lakehouse run``; returns the process exit code."""
    return Supervisor(
        get_settings(),
        out=lambda line: print(line, flush=True),
        err=lambda line: print(line, file=sys.stderr, flush=True),
    ).run()
