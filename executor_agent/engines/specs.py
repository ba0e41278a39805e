"""A task's spec read through its engine's generated model (executor_agent/generated/contract.py).

The control plane validated the spec at submit with the same schema; reading it again here gives the
engine typed fields and defaults, and turns a spec from an older or foreign control plane that does not
fit into an EngineError naming the field (``spec.threads: Input should be a valid integer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from executor_agent.engines.base import EngineError
from executor_agent.generated import contract

SpecT = TypeVar("SpecT", bound=BaseModel)


_TYPE_LABELS = ("str", "int", "float", "bool", "function-after", "function-before")


def _is_union_label(part: int | str) -> bool:
    # A union member's name in an error's location ("project", "DbtProjectArtifact", "artifact"): not a field.
    if isinstance(part, int):
        return False
    if part in _TYPE_LABELS or part.startswith(("list[", "dict[", "function-")):
        return True
    return isinstance(getattr(contract, part, None), type)


def field_path(loc: tuple[int | str, ...], where: str = "spec") -> str:
    """``("delta", "keys", 0)`` -> ``spec.delta.keys[0]`` (union members left out)."""
    out = where
    for part in loc:
        if _is_union_label(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def typed_spec(model: type[SpecT], spec: Mapping[str, Any], *, key: str, engine: str) -> SpecT:
    """``spec`` validated by ``model`` (its key and engine filled from the claim when absent)."""
    return typed_part(model, {"key": key, "engine": engine, **spec}, where="spec")


def typed_part(model: type[SpecT], value: Any, *, where: str) -> SpecT:
    """A part of a spec (``spec.delta``) validated by its model; EngineError naming the field under ``where``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        # Of the reasons each union member gives, the deepest names the field best.
        error = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        raise EngineError(f"{field_path(tuple(error.get('loc', ())), where)}: {message}") from None
