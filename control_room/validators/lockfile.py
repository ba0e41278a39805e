"""Says how pyproject.toml and uv.lock disagree, in words a person can act on (stdlib only).

`uv lock --check` is the authority on whether a lock is current, but its explanation is a debug dump.
`make lock-check` runs this module by path (before anything is installed) when uv refuses the lock,
to name each requirement that differs, and `tests/unit/test_lock.py` runs it on every test run.
It also keeps pre-releases out of the lock except those a package publishes nothing else than.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

# Packages allowed to be pre-releases in a lock, and why. Anything else that is a pre-release fails.
ALLOWED_PRERELEASES = {
    # Pinned exactly (==0.xbN) by opentelemetry-sdk, which mlflow needs; it publishes only 0.xbN versions.
    "opentelemetry-semantic-conventions",
}
_PRERELEASE = re.compile(r"\d(a|b|rc|\.dev)\d*")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")

Requirement = tuple[str, str, str, str]  # (name, extras, specifier, extra it belongs to: "" for the base)


def _normal_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _specifier(text: str) -> str:
    return ",".join(sorted(part.strip() for part in text.split(",") if part.strip()))


def _from_pyproject(project: dict[str, Any]) -> set[Requirement]:
    wanted: set[Requirement] = set()
    groups: dict[str, list[str]] = {"": list(project.get("dependencies", []))}
    groups.update(project.get("optional-dependencies", {}))
    for extra, lines in groups.items():
        for line in lines:
            match = _REQUIREMENT.match(line)
            if match is None:
                raise ValueError(f"cannot read the requirement {line!r} in pyproject.toml")
            name, extras, spec, _marker = match.groups()
            extras_text = ",".join(sorted(e.strip() for e in (extras or "[]")[1:-1].split(",") if e.strip()))
            wanted.add((_normal_name(name), extras_text, _specifier(spec), extra))
    return wanted


def _from_lock(lock: dict[str, Any], project_name: str) -> set[Requirement] | None:
    for package in lock.get("package", []):
        if _normal_name(package["name"]) != _normal_name(project_name):
            continue
        locked: set[Requirement] = set()
        for item in package.get("metadata", {}).get("requires-dist", []):
            marker = item.get("marker", "")
            extra_match = re.fullmatch(r"extra == '([^']+)'", marker)
            extra = extra_match.group(1) if extra_match else ""
            extras = ",".join(sorted(item.get("extras", [])))
            locked.add((_normal_name(item["name"]), extras, _specifier(item.get("specifier", "")), extra))
        return locked
    return None


def _describe(req: Requirement) -> str:
    name, extras, spec, extra = req
    where = f"extra '{extra}'" if extra else "the base dependencies"
    return f"{name}{f'[{extras}]' if extras else ''}{spec or ' (any version)'} in {where}"


def differences(project_dir: Path) -> list[str]:
    """Every way the lock in ``project_dir`` disagrees with its pyproject.toml, as sentences."""
    pyproject = tomllib.loads((project_dir / "pyproject.toml").read_text())
    lock_path = project_dir / "uv.lock"
    if not lock_path.exists():
        return [f"{lock_path} is missing"]
    lock = tomllib.loads(lock_path.read_text())
    project = pyproject["project"]
    wanted = _from_pyproject(project)
    locked = _from_lock(lock, project["name"])
    if locked is None:
        return [f"{lock_path} has no entry for the project {project['name']!r}"]
    problems = [f"pyproject.toml asks for {_describe(r)}; the lock does not" for r in sorted(wanted - locked)]
    problems += [f"the lock was made for {_describe(r)}; pyproject.toml no longer asks for it"
                 for r in sorted(locked - wanted)]
    if lock.get("requires-python") not in (None, project.get("requires-python")):
        problems.append(f"requires-python is {project.get('requires-python')!r} in pyproject.toml "
                        f"but {lock.get('requires-python')!r} in the lock")
    return problems


def unexpected_prereleases(project_dir: Path) -> list[str]:
    """Pre-release versions in the lock that no entry of ALLOWED_PRERELEASES explains."""
    lock = tomllib.loads((project_dir / "uv.lock").read_text())
    return [
        f"{package['name']} {package['version']}"
        for package in lock.get("package", [])
        if _PRERELEASE.search(str(package.get("version", "")))
        and _normal_name(package["name"]) not in ALLOWED_PRERELEASES
    ]


def main(argv: list[str]) -> int:
    """Print the differences of each project folder named (default: this one); 1 when there are any."""
    status = 0
    for folder in [Path(arg) for arg in argv] or [Path(".")]:
        found = differences(folder) + [
            f"pre-release {entry} is in the lock (allow it in control_room/validators/lockfile.py, with why)"
            for entry in ([] if not (folder / "uv.lock").exists() else unexpected_prereleases(folder))
        ]
        for line in found:
            print(f"{folder / 'uv.lock'}: {line}", file=sys.stderr)
        status = status or (1 if found else 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
