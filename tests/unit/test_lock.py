"""The lock files: current with their pyproject.toml, free of stray pre-releases, and a drift is named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from control_room.config import PROJECT_ROOT
from control_room.validators import lockfile

PROJECTS = [PROJECT_ROOT, PROJECT_ROOT / "packaging" / "executor-agent"]
UV = Path(sys.executable).with_name("uv")


@pytest.mark.parametrize("project", PROJECTS, ids=["control-room", "executor-agent"])
def test_lock_matches_pyproject(project: Path) -> None:
    assert lockfile.differences(project) == []
    # uv is the authority; offline, so the check never resolves anything anew.
    checked = subprocess.run(
        [str(UV), "lock", "--check", "--offline", "--project", str(project)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("project", PROJECTS, ids=["control-room", "executor-agent"])
def test_no_unexplained_prerelease_in_lock(project: Path) -> None:
    assert lockfile.unexpected_prereleases(project) == []


def test_lock_keeps_the_known_breaking_majors_out() -> None:
    import tomllib

    versions = {p["name"]: p["version"] for p in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]}
    assert versions["supabase-auth"].split(".")[0] == "2"  # 3.x drops AsyncGoTrueClient
    assert tuple(int(x) for x in versions["dbt-core"].split(".")[:2]) < (1, 12)


def _copy_project(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


def test_an_edited_dependency_is_named_with_the_command_to_run(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6.0",', '"pyyaml>=6.0.2",', 1))
    problems = lockfile.differences(project)
    assert "pyproject.toml asks for pyyaml>=6.0.2 in the base dependencies; the lock does not" in problems
    gone = "the lock was made for pyyaml>=6.0 in the base dependencies; pyproject.toml no longer asks for it"
    assert gone in problems

    script = PROJECT_ROOT / "control_room" / "validators" / "lockfile.py"
    run = subprocess.run([sys.executable, str(script), str(project)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "pyyaml>=6.0.2" in run.stderr


def test_a_new_extra_dependency_is_named(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text().replace('mlflow = ["mlflow>=3.0"]', 'mlflow = ["mlflow>=3.0", "x-y>=1"]')
    pyproject.write_text(text)
    assert lockfile.differences(project) == ["pyproject.toml asks for x-y>=1 in extra 'mlflow'; the lock does not"]


def test_a_prerelease_outside_the_allowed_list_is_refused(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    lock = project / "uv.lock"
    text = lock.read_text()
    start = text.index('name = "supabase-auth"\nversion = "')
    version_start = start + len('name = "supabase-auth"\nversion = "')
    version_end = text.index('"', version_start)
    lock.write_text(text[:version_start] + "3.0.0a1" + text[version_end:])
    assert lockfile.unexpected_prereleases(project) == ["supabase-auth 3.0.0a1"]
