"""Child processes of tasks: own process group, resource limits, stopping the whole group, orphan cleanup.

Every engine child starts in a new session (so its process group id is its pid) with, where the OS
allows, ``RLIMIT_AS``/``RLIMIT_CPU`` caps and (Linux) a parent-death signal, so a child does not
outlive an agent killed with ``kill -9``. Grandchildren stay in the group, and stopping a task signals
the whole group. A restarted agent stops groups its previous life recorded in the spool, after checking
that the group leader is still the same process (same start time), never a recycled pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None  # type: ignore[assignment]

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.05


def _load_prctl() -> Callable[..., int] | None:
    # Resolved once in the parent: the child between fork and exec must not load libraries.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def child_setup(*, memory_bytes: int | None, cpu_seconds: int | None) -> Callable[[], None]:
    """The function run in the child before exec: resource limits and the parent-death signal."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if resource is not None:
            if memory_bytes is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
            if cpu_seconds is not None:
                # SIGXCPU at the soft limit lets the program stop cleanly; the hard limit kills it.
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))

    return setup


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell it apart from a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(process: subprocess.Popen[bytes], *, grace_s: float, at_once: bool = False) -> None:
    """SIGTERM the child's group, SIGKILL it after ``grace_s`` (or at once); returns when the leader is reaped."""
    pgid = process.pid
    if not at_once and grace_s > 0:
        signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if process.poll() is not None and not group_alive(pgid):
                return
            time.sleep(_POLL_S)  # waiting for other processes to exit: there is nothing to await
    signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def kill_recorded_group(pgid: int, ticks: int | None) -> bool:
    """SIGKILL a group recorded by an earlier agent process, when it provably is that same group (Linux).

    A living leader must have the recorded start time. A group whose leader is gone may still have
    members (the parent-death signal reaches the leader only): Linux never hands out a pid while a
    group of that id exists, so such a group is still the recorded one.
    """
    if not sys.platform.startswith("linux") or ticks is None or pgid <= 1 or pgid == os.getpgid(0):
        return False
    leader_ticks = start_ticks(pgid)
    if leader_ticks is not None and leader_ticks != ticks:
        return False  # the pid now belongs to another process
    if not group_alive(pgid):
        return False
    signal_group(pgid, signal.SIGKILL)
    return True


_PR_SET_DUMPABLE = 4


def refuse_inspection() -> bool:
    """Make this process non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): other processes of the same user, such
    as its own tasks, can then neither read ``/proc/<pid>/environ`` or ``mem`` nor ptrace it, so the token in
    the agent's environment and memory stays out of their reach. A task's exec resets the flag for the task
    itself. False where prctl is unavailable (not Linux)."""
    if _PRCTL is None:
        return False
    return _PRCTL(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
