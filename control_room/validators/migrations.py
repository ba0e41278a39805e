"""`lakehouse validate migrations`: naming, forward-only against a base ref, squawk lint, apply from scratch.

- naming: ``<14-digit timestamp>_<snake_name>.sql``, no two files with the same timestamp;
- forward-only: every file of the base ref is still there, byte for byte (a merged migration may
  already be applied somewhere: change it with a new file), and new files sort after the base's;
- lint: squawk (``.squawk.toml`` at the repository root) on the files that are new since the base;
- apply: all files in order on an empty database (a temporary one on ``--database-url``'s server,
  else a throwaway embedded PostgreSQL), then control_room/db/tables.py is compared with the result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from control_room.config import MIGRATIONS_DIR, PROJECT_ROOT
from control_room.db.migrate import MIGRATION_NAME, MigrationError, migrate
from control_room.db.scratch import scratch_database, server_version
from control_room.validators.gitref import GitError, list_at, read_at, relative_to_repo, repo_root
from control_room.validators.results import CheckResult

SQUAWK_CONFIG = ".squawk.toml"


def naming_problems(directory: Path) -> list[str]:
    """Badly named migration files and duplicated timestamps."""
    problems: list[str] = []
    versions: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            problems.append(f"{path.name}: migration files must be named <14-digit timestamp>_<snake_name>.sql")
            continue
        version = match.group("version")
        if version in versions:
            problems.append(f"{path.name}: timestamp {version} is also used by {versions[version]}")
        versions.setdefault(version, path.name)
    return problems


def forward_only_problems(directory: Path, base_ref: str) -> tuple[list[str], list[Path]]:
    """Base-ref migrations edited or deleted, and new files that would apply before merged ones.

    Returns the problems and the files new since ``base_ref``.
    """
    repo = repo_root(directory.resolve())
    relative_dir = relative_to_repo(repo, directory)
    merged = [name for name in list_at(repo, base_ref, relative_dir) if name.endswith(".sql")]
    problems: list[str] = []
    for name in merged:
        current = directory / name
        if not current.exists():
            problems.append(
                f"{name}: deleted, but it is merged in {base_ref} (and may be applied): migrations are forward-only; "
                "restore it and undo its effect in a new migration"
            )
            continue
        before = read_at(repo, base_ref, f"{relative_dir}/{name}")
        if before is not None and before != current.read_bytes():
            problems.append(
                f"{name}: edited, but it is merged in {base_ref} (and may be applied; the runner refuses edited "
                "files): restore it and put the change in a new migration"
            )
    new_files = sorted(p for p in directory.glob("*.sql") if p.name not in set(merged))
    newest_merged = max(merged) if merged else ""
    for path in new_files:
        if path.name < newest_merged:
            problems.append(
                f"{path.name}: new, but sorts before {newest_merged} of {base_ref}: databases that applied that one "
                "would apply this out of order; give it a later timestamp"
            )
    return problems, new_files


def find_squawk() -> str | None:
    """The squawk executable (PyPI squawk-cli): on PATH, or beside this Python."""
    return shutil.which("squawk") or shutil.which("squawk", path=str(Path(sys.executable).parent))


def lint_problems(files: list[Path], config: Path | None) -> list[str]:
    """squawk's findings on ``files`` as ``file:line: rule: message`` lines."""
    if not files:
        return []
    squawk = find_squawk()
    if squawk is None:
        return ["squawk is not installed: pip install squawk-cli (it is in the dev extra)"]
    argv = [squawk, "--reporter", "json"]
    if config is not None and config.exists():
        argv += ["--config", str(config)]
    argv += [str(f) for f in files]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    try:
        findings = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        return [f"squawk failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[:500]}"]
    problems = []
    for finding in findings:
        name = Path(str(finding.get("file", "?"))).name
        # squawk counts lines from 0; editors and people from 1.
        line = finding["line"] + 1 if isinstance(finding.get("line"), int) else "?"
        problems.append(
            f"{name}:{line}: {finding.get('rule_name', '?')}: {finding.get('message', '')}"
            + (f" ({finding['help']})" if finding.get("help") else "")
        )
    if done.returncode != 0 and not problems:
        problems.append(f"squawk failed (exit {done.returncode}): {done.stderr.strip()[:500]}")
    return problems


def apply_problems(directory: Path, admin_url: str | None, *, check_drift: bool) -> tuple[list[str], str]:
    """Apply every migration to an empty database; returns problems and a note on what ran where."""
    started = time.monotonic()
    try:
        with scratch_database(admin_url) as url:
            applied = migrate(url, directory)
            version = server_version(url)
            problems: list[str] = []
            if check_drift:
                from control_room.db.drift import TABLES_FILE, schema_drift

                drift = schema_drift(url)
                problems += [f"{TABLES_FILE} drift: {line}" for line in drift]
    except MigrationError as exc:
        return [f"apply from scratch: {exc}"], ""
    except psycopg.Error as exc:
        return [f"apply from scratch: cannot use the database: {str(exc).strip()}"], ""
    where = "the given server" if admin_url else "a temporary embedded PostgreSQL"
    elapsed = time.monotonic() - started
    note = f"applied {len(applied)} file(s) from scratch on PostgreSQL {version} ({where}) in {elapsed:.1f} s"
    return problems, note


def check_migrations(
    directory: Path = MIGRATIONS_DIR,
    *,
    base_ref: str | None,
    database_url: str | None = None,
    lint: bool = True,
    apply: bool = True,
) -> CheckResult:
    """Every migration check; the result lists each problem with the file it is about."""
    started = time.monotonic()
    directory = Path(directory)
    problems = naming_problems(directory)
    notes: list[str] = []
    files = sorted(directory.glob("*.sql"))
    to_lint = files
    if base_ref:
        try:
            forward, to_lint = forward_only_problems(directory, base_ref)
            problems += forward
            notes.append(f"forward-only against {base_ref}: {len(files) - len(to_lint)} merged, {len(to_lint)} new")
        except GitError as exc:
            problems.append(str(exc))
    if lint:
        try:
            config: Path | None = repo_root(directory.resolve()) / SQUAWK_CONFIG
        except GitError:
            config = PROJECT_ROOT / SQUAWK_CONFIG
        problems += lint_problems(to_lint, config)
        notes.append(f"squawk on {len(to_lint)} file(s)" + (" (new since the base)" if base_ref else ""))
    if apply:
        applied, note = apply_problems(
            directory, database_url, check_drift=directory.resolve() == MIGRATIONS_DIR.resolve()
        )
        problems += applied
        if note:
            notes.append(note)
    status = "failed" if problems else "passed"
    summary = (
        f"{len(files)} migration(s): {len(problems)} problem(s)"
        if problems
        else f"{len(files)} migration(s) OK: " + "; ".join(notes)
    )
    return CheckResult(
        name="migrations",
        status=status,
        summary=summary,
        details=problems,
        duration_s=round(time.monotonic() - started, 3),
    )
