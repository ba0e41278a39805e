"""A local Superset for the control room (`make superset`, `lakehouse superset up`, and the tests' one server).

Superset runs in its own virtualenv (``.tools/superset-venv``, built with uv from deploy/superset/requirements.txt:
its pins conflict with ours). Its metadata database lives on the control plane's Postgres. Initialising one (migrations,
roles and permissions, the service account) takes one to two minutes, so the first initialised database is kept as a
template (``superset_template_<hash>``) keyed on the requirements and the bootstrap script: later instances are copies
of it (``create database … template``, a second). The read-only role Superset reads the control plane with
(``lakehouse_superset_reader``, supabase/migrations/20261209000400_superset_reader.sql) is given its password here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from control_room.config import PROJECT_ROOT
from control_room.db.connection import (
    copy_database,
    database_exists,
    publish_database,
    recreate_database,
    set_login_password,
)
from control_room.server_health import poll_health

RECIPE_DIR = PROJECT_ROOT / "deploy" / "superset"
REQUIREMENTS = RECIPE_DIR / "requirements.txt"
BOOTSTRAP = RECIPE_DIR / "bootstrap.py"
CONFIG = RECIPE_DIR / "superset_config.py"
DEFAULT_VENV = PROJECT_ROOT / ".tools" / "superset-venv"
READER_ROLE = "lakehouse_superset_reader"
HEALTH_POLL_SECONDS = 0.5
INSTALL_TIMEOUT_SECONDS = 900.0
BOOTSTRAP_TIMEOUT_SECONDS = 900.0
READY_TIMEOUT_SECONDS = 300.0


class SupersetServerError(RuntimeError):
    """Superset could not be installed, initialised or started; the message says what to do."""


def recipe_hash(*extra: str) -> str:
    """What an installed virtualenv (and, with the service account, an initialised template database) depends on."""
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, BOOTSTRAP, CONFIG):
        digest.update(path.read_bytes())
    for value in extra:
        digest.update(b"\0" + value.encode())
    return digest.hexdigest()[:12]


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SupersetServerError("uv is needed to build Superset's virtualenv: run `make install-dev` first")
    return found


def ensure_installed(venv: Path = DEFAULT_VENV, *, log_file: Path | None = None) -> Path:
    """Superset's virtualenv, built with uv when missing or when the requirements changed; its python."""
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{recipe_hash()}"
    if stamp.exists() and python.exists():
        return python
    with exclusive(venv.with_name(f".{venv.name}.lock")), _log_sink(log_file) as log:
        if stamp.exists() and python.exists():  # another process installed it while this one waited
            return python
        for command in (
            [_uv(), "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(venv)],
            [_uv(), "pip", "install", "--quiet", "--python", str(python), "-r", str(REQUIREMENTS)],
        ):
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_SECONDS)
            if done.returncode != 0:
                raise SupersetServerError(f"`{' '.join(command)}` failed (exit {done.returncode}, see {log_file})")
        for old in venv.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    return python


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file``: one install at a time into one virtualenv (`make superset`
    beside the tests, or two test workers)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def psycopg2_url(conninfo: str, **override: str) -> str:
    """A libpq URL as Superset's SQLAlchemy 1.4 wants it (``postgresql+psycopg2://``)."""
    from sqlalchemy.engine import URL

    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None} | override
    host = params.get("host") or "localhost"
    query = {"host": host} if host.startswith("/") else {}
    return URL.create(
        "postgresql+psycopg2", username=params.get("user"), password=params.get("password"),
        host=None if query else host, port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"), query=query,
    ).render_as_string(hide_password=False)  # fmt: skip


@dataclass(frozen=True)
class SupersetPlan:
    """One Superset instance: where it listens, its metadata database, its secrets and service account."""

    control_plane_url: str
    metadata_database: str
    host: str = "127.0.0.1"
    port: int = 8088
    username: str = "lh-service"
    password: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    guest_token_secret: str = field(default="", repr=False)
    venv: Path = DEFAULT_VENV

    @property
    def url(self) -> str:
        """The base URL of the started server."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment of Superset's processes (deploy/superset/superset_config.py reads it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "PYTEST", "VIRTUAL_ENV"))}
        env.update(
            SUPERSET_CONFIG_PATH=str(CONFIG), FLASK_APP="superset", PYTHONUNBUFFERED="1",
            SUPERSET_METADATA_URI=psycopg2_url(self.control_plane_url, dbname=self.metadata_database),
            SUPERSET_SECRET_KEY=self.secret_key, SUPERSET_GUEST_TOKEN_SECRET=self.guest_token_secret,
        )  # fmt: skip
        return env


@contextlib.contextmanager
def _log_sink(log_file: Path | None) -> Iterator[IO[bytes] | int]:
    """Where a step's output goes: appended to ``log_file``, or discarded when there is none."""
    if log_file is None:
        yield subprocess.DEVNULL
        return
    with log_file.open("ab") as log:
        yield log


def template_database(plan: SupersetPlan) -> str:
    """The name of the initialised template database for this recipe and service account."""
    # The service account's password is in the template: a different account is a different template.
    return f"superset_template_{recipe_hash(plan.username, plan.password)}"


def ensure_template(plan: SupersetPlan, python: Path, *, log_file: Path | None = None) -> str:
    """The initialised template database, built first when it does not exist yet (the one slow step); its name."""
    template = template_database(plan)
    if database_exists(plan.control_plane_url, template):
        return template
    building = f"{template}_building_{os.getpid()}"
    recreate_database(plan.control_plane_url, building)
    _bootstrap(plan, python, building, log_file)
    publish_database(plan.control_plane_url, building, template)  # another process may have built it meanwhile
    return template


def ensure_metadata_database(plan: SupersetPlan, python: Path, *, log_file: Path | None = None) -> bool:
    """Create the plan's metadata database, initialised, when missing: a copy of the template database (built
    first when missing). True when it was created."""
    if database_exists(plan.control_plane_url, plan.metadata_database):
        return False
    template = ensure_template(plan, python, log_file=log_file)
    copy_database(plan.control_plane_url, template, plan.metadata_database)
    return True


def _bootstrap(plan: SupersetPlan, python: Path, database: str, log_file: Path | None) -> None:
    """Migrations, roles, permissions and the service account, in one process (deploy/superset/bootstrap.py)."""
    env = plan.env() | {"SUPERSET_METADATA_URI": psycopg2_url(plan.control_plane_url, dbname=database)}
    with _log_sink(log_file) as log:
        done = subprocess.run(
            [str(python), str(BOOTSTRAP), plan.username, plan.password], env=env, stdout=log,
            stderr=subprocess.STDOUT, timeout=BOOTSTRAP_TIMEOUT_SECONDS,
        )  # fmt: skip
    if done.returncode != 0:
        raise SupersetServerError(f"initialising Superset's metadata database failed (exit {done.returncode}, "
                                  f"see {log_file})")  # fmt: skip


def set_reader_password(control_plane_url: str, password: str) -> None:
    """Let the read-only role log in, with this password (the role itself comes from the migrations)."""
    set_login_password(control_plane_url, READER_ROLE, password)


def reader_url(control_plane_url: str, password: str, host: str | None = None) -> str:
    """The SQLAlchemy URL Superset reads the control plane with (the read-only role)."""
    override = {"user": READER_ROLE, "password": password}
    if host:
        name, _, port = host.partition(":")
        override |= {"host": name} | ({"port": port} if port else {})
    return psycopg2_url(make_conninfo(control_plane_url), **override)


def start(plan: SupersetPlan, python: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """``superset run`` (threaded) in its own process group, its output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    superset = python.with_name("superset")
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [str(superset), "run", "-h", plan.host, "-p", str(plan.port), "--with-threads"],
            env=plan.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_until_healthy(
    url: str, process: subprocess.Popen[bytes] | None, log_file: Path, timeout_seconds: float = READY_TIMEOUT_SECONDS
) -> None:
    """Poll ``/health`` until it answers 200; SupersetServerError when the server exits or times out."""
    poll_health(url, process, name="Superset", where=f" (see {log_file})", timeout_seconds=timeout_seconds,
                poll_seconds=HEALTH_POLL_SECONDS, error=SupersetServerError)  # fmt: skip


def up(plan: SupersetPlan, log_file: Path) -> subprocess.Popen[bytes]:
    """Install (when needed), initialise the metadata database (when missing), start and wait until healthy."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    python = ensure_installed(plan.venv, log_file=log_file)
    ensure_metadata_database(plan, python, log_file=log_file)
    process = start(plan, python, log_file)
    wait_until_healthy(plan.url, process, log_file)
    return process
