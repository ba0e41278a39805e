"""`lakehouse superset up`: install, initialise and start a local Superset on the control plane's Postgres."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from control_room import superset_server
from control_room.config import get_settings
from control_room.supervisor import SupervisorError, control_plane_database

app = typer.Typer(help="A local Superset: install it in its own virtualenv and start it.", no_args_is_help=True)


@app.command("up")
def up_command(
    port: Annotated[int, typer.Option("--port")] = 8088,
    database: Annotated[str, typer.Option("--database", help="Superset's metadata database.")] = "superset",
) -> None:
    """Install Superset (.tools/superset-venv), initialise its metadata database and run it until Ctrl-C.

    Secrets come from LAKEHOUSE_SUPERSET_PASSWORD and LAKEHOUSE_SUPERSET_READER_PASSWORD when set; otherwise
    generated ones are written to .lakehouse/superset.env (kept for the next start) and printed as exports."""
    settings = get_settings()
    secrets_file = settings.data_dir / "superset.env"
    saved = _read_env(secrets_file)
    values = {
        "LAKEHOUSE_SUPERSET_URL": f"http://127.0.0.1:{port}",
        "LAKEHOUSE_SUPERSET_USERNAME": settings.superset_username,
        "LAKEHOUSE_SUPERSET_PASSWORD": settings.superset_password.get_secret_value() if settings.superset_password
        else saved.get("LAKEHOUSE_SUPERSET_PASSWORD", secrets.token_urlsafe(18)),
        "LAKEHOUSE_SUPERSET_READER_PASSWORD": settings.superset_reader_password.get_secret_value()
        if settings.superset_reader_password else saved.get("LAKEHOUSE_SUPERSET_READER_PASSWORD",
                                                            secrets.token_urlsafe(18)),
        "SUPERSET_SECRET_KEY": saved.get("SUPERSET_SECRET_KEY", secrets.token_urlsafe(32)),
        "SUPERSET_GUEST_TOKEN_SECRET": saved.get("SUPERSET_GUEST_TOKEN_SECRET", secrets.token_urlsafe(32)),
    }  # fmt: skip
    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    secrets_file.chmod(0o600)
    log_file = settings.data_dir / "logs" / "superset.log"
    try:
        with control_plane_database(settings) as control_plane:
            superset_server.set_reader_password(control_plane.url, values["LAKEHOUSE_SUPERSET_READER_PASSWORD"])
            plan = superset_server.SupersetPlan(
                control_plane_url=control_plane.url, metadata_database=database, port=port,
                username=settings.superset_username, password=values["LAKEHOUSE_SUPERSET_PASSWORD"],
                secret_key=values["SUPERSET_SECRET_KEY"], guest_token_secret=values["SUPERSET_GUEST_TOKEN_SECRET"],
            )  # fmt: skip
            typer.echo(f"installing and initialising Superset (log: {log_file}); the first time takes minutes")
            process = superset_server.up(plan, log_file)
            typer.echo(f"Superset is up at {plan.url}. For the control room (also in {secrets_file}):")
            for key in ("LAKEHOUSE_SUPERSET_URL", "LAKEHOUSE_SUPERSET_USERNAME", "LAKEHOUSE_SUPERSET_PASSWORD",
                        "LAKEHOUSE_SUPERSET_READER_PASSWORD"):  # fmt: skip
                typer.echo(f"  export {key}={values[key]}")
            # Ctrl-C or a TERM (a supervisor, a background job that ignores SIGINT) stops Superset with us.
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                process.wait()
            except KeyboardInterrupt:
                process.terminate()
                process.wait(timeout=20)
    except (superset_server.SupersetServerError, SupervisorError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _read_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
    return {key: value for key, value in pairs}
