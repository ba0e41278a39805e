"""Wait for a server the control room started (MLflow, Superset) to answer its ``/health`` with 200."""

from __future__ import annotations

import subprocess
import time


def poll_health(
    url: str,
    process: subprocess.Popen[bytes] | None,
    *,
    name: str,
    where: str,
    timeout_seconds: float,
    poll_seconds: float,
    error: type[Exception],
) -> None:
    """Poll ``{url}/health`` until it answers 200; raise ``error`` when ``process`` exits or the deadline passes.

    ``name`` says which server in the messages ("the MLflow server"); ``where`` is appended to them (for example
    " (see its log)")."""
    import httpx

    deadline = time.monotonic() + timeout_seconds
    last = "no answer yet"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise error(f"{name} exited with code {process.returncode}{where}")
            try:
                response = client.get(f"{url}/health")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(poll_seconds)
    raise error(f"{name} at {url} was not healthy after {timeout_seconds:.0f} s (last answer: {last}){where}")
