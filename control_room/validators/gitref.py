"""Reading files as they were at a git ref (the PR's base), for checks that compare against it."""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitError(RuntimeError):
    """git failed or the ref does not exist; the message says which and what to do."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, timeout=60)
    except FileNotFoundError as exc:
        raise GitError("git is not installed; the base-ref checks need it") from exc


def repo_root(start: Path) -> Path:
    """The top folder of the git work tree containing ``start``."""
    folder = start if start.is_dir() else start.parent
    done = _git(folder, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise GitError(f"{start} is not inside a git work tree: {done.stderr.decode(errors='replace').strip()}")
    return Path(done.stdout.decode().strip())


def resolve_ref(repo: Path, ref: str) -> str:
    """The commit id ``ref`` names; ``GitError`` when it names none (e.g. the base branch was not fetched)."""
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if done.returncode != 0:
        raise GitError(
            f'git ref "{ref}" does not name a commit in {repo} (in CI, fetch the base branch first: '
            "actions/checkout with fetch-depth: 0)"
        )
    return done.stdout.decode().strip()


def relative_to_repo(repo: Path, path: Path) -> str:
    """``path`` relative to the repository root, POSIX style (as git names it)."""
    return path.resolve().relative_to(repo.resolve()).as_posix()


def read_at(repo: Path, ref: str, relative: str) -> bytes | None:
    """The bytes of a file at ``ref``, or None when it did not exist there."""
    commit = resolve_ref(repo, ref)
    done = _git(repo, "cat-file", "blob", f"{commit}:{relative}")
    if done.returncode != 0:
        return None
    return done.stdout


def list_at(repo: Path, ref: str, relative_dir: str) -> list[str]:
    """File names (not paths) directly inside a folder at ``ref``; empty when the folder did not exist."""
    commit = resolve_ref(repo, ref)
    done = _git(repo, "ls-tree", "-z", "--name-only", f"{commit}:{relative_dir}")
    if done.returncode != 0:
        return []
    return sorted(name for name in done.stdout.decode().split("\0") if name)
