"""Migration order and immutability, for every store's migrations folder.

Order: names match ``NNN_description.sql``; numbers run 001, 002, ...
without gaps or duplicates; a down file has its up file; every migration has
a down file or a ``-- platformdb: no-down <reason>`` directive. Unlike the
engine's file discovery, which stops at the first problem, every problem is
reported.

Immutability: a migration (up file) that exists on the main branch must be
unchanged in the working tree; down files are not checked, as the engine's
ledger checksums only the up file and a broken down file may be repaired.
The base is ``origin/main`` when it exists, else ``main``. Files the branch
adds are new, not edited. Outside a git checkout, or with no base branch, the
check is skipped with a note.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from platformdb.errors import MigrationError
from platformdb.lint.context import MIGRATION_DIRS, Context
from platformdb.lint.findings import Finding
from platformdb.migrate.files import DOWN_RE, UP_RE, parse_directives

BASE_BRANCHES = ("origin/main", "main")
GIT_TIMEOUT = 60


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for folder in MIGRATION_DIRS:
        directory = ctx.root / folder
        if directory.is_dir():
            findings.extend(check_order(ctx, directory))
    findings.extend(check_immutable(ctx))
    return findings


def check_order(ctx: Context, directory: Path) -> list[Finding]:
    findings: list[Finding] = []
    ups: dict[int, list[Path]] = {}
    downs: dict[int, list[Path]] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix != ".sql":
            continue
        down, up = DOWN_RE.match(path.name), UP_RE.match(path.name)
        if down:
            downs.setdefault(int(down["version"]), []).append(path)
        elif up:
            ups.setdefault(int(up["version"]), []).append(path)
        else:
            findings.append(Finding(ctx.rel(path), 1, "migration-name",
                                    "not a migration name; expected NNN_description.sql "
                                    "(lower-case letters, digits and _)"))
    for version, paths in sorted(ups.items()):
        for extra in paths[1:]:
            findings.append(Finding(ctx.rel(extra), 1, "migration-duplicate",
                                    f"number {version:03d} is also used by {paths[0].name}"))
    for version, paths in sorted(downs.items()):
        up_stems = {p.stem for p in ups.get(version, [])}
        for path in paths:
            if path.name.removesuffix(".down.sql") not in up_stems:
                findings.append(Finding(ctx.rel(path), 1, "migration-orphan-down",
                                        "down file without a matching up file"))
    findings.extend(_gaps(ctx, directory, sorted(ups)))
    down_stems = {p.name.removesuffix(".down.sql") for ps in downs.values() for p in ps}
    for paths in ups.values():
        for path in paths:
            findings.extend(_down_or_reason(ctx, path, path.stem in down_stems))
    return findings


def _gaps(ctx: Context, directory: Path, versions: list[int]) -> list[Finding]:
    findings: list[Finding] = []
    expected = 1
    for version in versions:
        if version != expected:
            missing = (f"{expected:03d}" if version == expected + 1
                       else f"{expected:03d}-{version - 1:03d}")
            findings.append(Finding(ctx.rel(directory), 0, "migration-gap",
                                    f"no migration numbered {missing}; numbers run 001, 002, "
                                    "... without gaps"))
        expected = version + 1
    return findings


def _down_or_reason(ctx: Context, path: Path, has_down: bool) -> list[Finding]:
    rel = ctx.rel(path)
    try:
        directives = parse_directives(path.read_text(encoding="utf-8"), path)
    except MigrationError as exc:
        return [Finding(rel, 1, "migration-directive", str(exc).split(": ", 1)[-1])]
    if not has_down and "no-down" not in directives:
        return [Finding(rel, 1, "migration-no-down",
                        f"no {path.stem}.down.sql; add one, or say why not with "
                        "'-- platformdb: no-down <reason>' at the top")]
    return []


def find_base(root: Path) -> str | None:
    """``origin/main`` or ``main`` if ``root`` is in a git checkout that has one."""
    if shutil.which("git") is None or _git(root, "rev-parse", "--git-dir") is None:
        return None
    for branch in BASE_BRANCHES:
        if _git(root, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}") is not None:
            return branch
    return None


def check_immutable(ctx: Context) -> list[Finding]:
    folders = [f for f in MIGRATION_DIRS if (ctx.root / f).is_dir()]
    if not folders:
        return []
    base = find_base(ctx.root)
    if base is None:
        return [Finding(folders[0], 0, "migration-immutability-skipped",
                        "not a git checkout with an origin/main or main branch; "
                        "edited migrations were not looked for", "info")]
    listed = _git(ctx.root, "ls-tree", "-r", "--name-only", "--full-name", base, "--",
                  *folders)
    prefix = (_git(ctx.root, "rev-parse", "--show-prefix") or "").strip()
    findings: list[Finding] = []
    for name in (listed or "").splitlines():
        rel = name.removeprefix(prefix)
        if not UP_RE.match(Path(rel).name):
            continue  # down files may be fixed: only the up file is applied and checksummed
        committed = _git(ctx.root, "show", f"{base}:{name}")
        current = ctx.root / rel
        if not current.is_file():
            findings.append(Finding(rel, 0, "migration-deleted",
                                    f"this migration exists on {base} and was deleted; "
                                    "applied migrations are never removed"))
        elif committed is not None and _normal(current.read_text(encoding="utf-8")) != _normal(
                committed):
            findings.append(Finding(
                rel, _first_difference(committed, current.read_text(encoding="utf-8")),
                "migration-edited",
                f"this migration exists on {base} and was edited; "
                "put the change in a new migration instead"))
    return findings


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n")


def _first_difference(old: str, new: str) -> int:
    old_lines, new_lines = _normal(old).split("\n"), _normal(new).split("\n")
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if a != b:
            return number
    return min(len(old_lines), len(new_lines)) + 1


def _git(root: Path, *args: str) -> str | None:
    """``git -C root args`` stdout, or None when it fails."""
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                text=True, timeout=GIT_TIMEOUT, check=False)
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None
