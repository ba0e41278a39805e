"""YAML documents that remember where every value came from, so errors name file, line and field path.

Used by bundles, the backlog and the capabilities matrix: ``load_yaml`` parses one file (YAML 1.2,
duplicate keys refused) into plain Python data plus a map from field paths to line numbers, and
``validation_problems`` turns a pydantic ``ValidationError`` into ``Problem``s located in the file.
"""

from __future__ import annotations

import datetime as dt
import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

FieldPath = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


def published_file_config(title: str) -> ConfigDict:
    """The model config of a YAML file format we publish as JSON Schema: strict, closed, immutable, titled."""
    return ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        title=title,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )


def format_path(path: Sequence[str | int]) -> str:
    """``("caps", 2, "limit")`` -> ``caps[2].limit``; the empty path is ``(document)``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input file, located precisely enough to fix it."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        """The problem as a JSON object (for ``--format json`` and CI result files)."""
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class InvalidInput(Exception):
    """One or more problems in input files; ``str()`` lists them one per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class YamlDocument:
    """A parsed YAML file: plain data (dict/list/str/int/float/bool/None) and each path's line."""

    file: str
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """Line of the value at ``path``, or of its nearest ancestor that exists (1 for the document)."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A problem at ``path`` of this document."""
        return Problem(self.file, self.line_of(path), format_path(path), message)


def _plain(node: Any, path: FieldPath, lines: dict[FieldPath, int]) -> Any:
    """ruamel's round-trip nodes -> plain Python, recording 1-based lines of keys and list items."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            line, _col = node.lc.key(key)
            lines[child] = line + 1
            out[str(key)] = _plain(value, child, lines)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            child = (*path, index)
            line, _col = node.lc.item(index)
            lines[child] = line + 1
            items.append(_plain(value, child, lines))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.date):
        # YAML timestamps stay text: configuration compares them as written.
        return node.isoformat()
    return str(node)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse YAML text; a syntax error or a duplicate key raises ``InvalidInput`` at its line."""
    # Imported by the paths that read YAML: the models here are on every replica's start-up path, ruamel is not.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        node = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = " ".join(str(exc.problem or exc.context or exc).split())
        raise InvalidInput([Problem(file, line, "(document)", f"invalid YAML: {reason}")]) from exc
    except YAMLError as exc:
        raise InvalidInput([Problem(file, 1, "(document)", f"invalid YAML: {exc}")]) from exc
    lines: dict[FieldPath, int] = {(): 1}
    return YamlDocument(file=file, data=_plain(node, (), lines), lines=lines)


def load_yaml(path: Path, display: str | None = None) -> YamlDocument:
    """Read and parse one YAML file; ``display`` is the name used in problems (default: the path)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput([Problem(name, 1, "(document)", f"cannot read the file: {exc}")]) from exc
    return parse_yaml(text, name)


# pydantic errors -> problems ---------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """The model type inside ``X | None``, ``list[X]`` or ``dict[str, X]`` (one level)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else None
    if origin in (list, tuple, dict):
        args = typing.get_args(annotation)
        return args[-1] if args else None
    return annotation


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class describing the object at ``loc`` (for 'did you mean' suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = info.annotation
        for _ in range(3):  # Optional[list[Model]] and the like
            unwrapped = _unwrap(current)
            if unwrapped is current or unwrapped is None:
                break
            current = unwrapped
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _message(error: Mapping[str, Any], model: type[BaseModel], loc: FieldPath) -> str:
    kind = str(error.get("type", ""))
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        known = sorted(parent.model_fields) if parent else []
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f'; did you mean "{guess[0]}"?' if guess else (f" (known fields: {', '.join(known)})" if known else "")
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    message = str(error.get("msg", "invalid value"))
    if "input" in error and kind not in ("model_type", "dict_type", "list_type"):
        given = error["input"]
        if not isinstance(given, dict | list):
            message += f" (got {given!r})"
    return message


def validation_problems(
    document: YamlDocument, exc: ValidationError, model: type[BaseModel], prefix: FieldPath = ()
) -> list[Problem]:
    """Each pydantic error of validating ``document.data`` (at ``prefix``) as a located problem."""
    problems: list[Problem] = []
    for error in exc.errors():
        # pydantic appends validator tags (e.g. "function-after[...]") for some types; drop them.
        loc: FieldPath = tuple(p for p in error["loc"] if isinstance(p, int) or "[" not in str(p))
        path = (*prefix, *loc)
        problems.append(document.problem(path, _message(error, model, loc)))
    return problems


def validate_document(document: YamlDocument, model: type[ModelT]) -> ModelT:
    """``document.data`` as ``model``; raises ``InvalidInput`` with every problem located."""
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise InvalidInput([document.problem((), "the file must hold a mapping (key: value pairs) at the top")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(validation_problems(document, exc, model)) from exc
