"""The engine registry: which engines this machine can run, found by module name under this package.

Each engine lives in ``executor_agent/engines/<name>.py`` and defines one ``Engine`` subclass with a
``name``; ``available()`` says whether its libraries or binaries are installed. A module that fails to
import (a missing optional dependency) makes its engine unavailable, with the reason kept for
``lakehouse-executor check``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass

from executor_agent.engines.base import Engine

# Modules in this package that are not engines.
_NOT_ENGINES = frozenset({"base", "python_child"})


@dataclass(frozen=True)
class EngineStatus:
    """One engine module: the class found (when it imports) and whether it can run here."""

    name: str
    engine: type[Engine] | None
    available: bool
    reason: str = ""


def engine_module_names() -> list[str]:
    """Names of the engine modules in this package (shell, python, dbt, spark, ...)."""
    return sorted(
        info.name for info in pkgutil.iter_modules(__path__) if not info.ispkg and info.name not in _NOT_ENGINES
    )


def _engine_class(module_name: str) -> type[Engine] | None:
    module = importlib.import_module(f"{__name__}.{module_name}")
    for _, value in inspect.getmembers(module, inspect.isclass):
        if (
            issubclass(value, Engine)
            and value is not Engine
            and value.__module__ == module.__name__
            and not inspect.isabstract(value)
            and getattr(value, "name", None)
        ):
            return value
    return None


def engine_statuses() -> list[EngineStatus]:
    """Every engine module with whether it is available on this machine (and why not)."""
    statuses = []
    for module_name in engine_module_names():
        try:
            engine = _engine_class(module_name)
        except Exception as exc:  # an engine's optional dependency is missing or broken
            statuses.append(EngineStatus(module_name, None, False, f"cannot import: {type(exc).__name__}: {exc}"))
            continue
        if engine is None:
            continue  # a helper module of some engine, not an engine itself
        try:
            available = bool(engine.available())
        except Exception as exc:
            statuses.append(EngineStatus(engine.name, engine, False, f"available() failed: {exc}"))
            continue
        reason = "" if available else "its libraries or binaries are not installed"
        statuses.append(EngineStatus(engine.name, engine, available, reason))
    return statuses


class EngineNotAvailable(Exception):
    """An engine was asked for by name and this machine cannot run it."""


def discover_engines(wanted: list[str] | None = None) -> dict[str, type[Engine]]:
    """The engines to run: every available one, or exactly ``wanted`` (refusing any that is not available)."""
    statuses = {status.name: status for status in engine_statuses()}
    if wanted is None:
        return {name: s.engine for name, s in statuses.items() if s.available and s.engine is not None}
    chosen: dict[str, type[Engine]] = {}
    for name in wanted:
        status = statuses.get(name)
        if status is None:
            known = ", ".join(sorted(statuses)) or "none"
            raise EngineNotAvailable(f"engine {name!r} does not exist (engines: {known})")
        if not status.available or status.engine is None:
            raise EngineNotAvailable(f"engine {name!r} is not available on this machine: {status.reason}")
        chosen[name] = status.engine
    return chosen
