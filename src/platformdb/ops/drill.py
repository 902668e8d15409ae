"""``platformdb backup verify [SET]``: the restore drill.

A backup set is restored into scratch targets only -- each store's own staging
(``Store.stage(..., force=True, verify=True)``: a scratch PostgreSQL database, a
scratch ClickHouse database, Redis keys under staging names) -- checked there, and
the staged copies are then *discarded* instead of switched in: the live targets
never change. The checks:

- every file of every part against its manifest, and every staged table / key type
  against the manifest's counts and checksums (what the staging verifies);
- PostgreSQL: the scratch schema (owners and grants included) is what the migration
  files build: any drift fails the drill;
- ClickHouse: each rollup table equals the rollup of its raw table (the view's own
  query run over the scratch raw table). Dictionaries are not checked here: a
  restore creates them at the switch, reading their live source, which the drill
  never reaches (``health`` loads the live ones);
- Redis: the queue invariants -- every member of a queue's ready, processing,
  delayed and dead structures has its job hash, and every job hash is in exactly
  one of them.

The drill is journaled like a restore (operation ``backup verify``), so a drill
killed midway leaves nothing ``platformdb recover`` does not drop. Its outcome and
duration (the measured recovery time) are recorded beside the backups
(:func:`platformdb.backup.state.record_verification`) for the exporter.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platformdb.backup.archive import opened
from platformdb.backup.manifest import read_manifest
from platformdb.backup.sets import find_set, is_set, journal_record
from platformdb.backup.state import Verification, record_verification
from platformdb.errors import CheckFailed, PlatformDBError, one_line, when_interrupted
from platformdb.journal import crash_point
from platformdb.migrate.snapshot import NOT_FINGERPRINTED
from platformdb.ops.backup import Reported, ReportedStage, begin_journal, unpacked
from platformdb.ops.context import Context, context
from platformdb.stores.clickhouse.backup import _differing_buckets, _rollups
from platformdb.stores.redis.backup import _entries, _unb64
from platformdb.types import Endpoints

__all__ = ["Drilled", "backup_dir_of", "queue_problems", "required", "verify_set"]


@dataclass
class Drilled:
    """What a drill found: the set, how long it took, and the first problem (if any)."""

    set: str
    seconds: float
    ok: bool
    reason: str = ""
    stores: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    restore_seconds: float = 0.0
    """Of ``seconds``, the time restoring (staging) the stores took, without the checks."""

    def as_dict(self) -> dict[str, Any]:
        return {"set": self.set, "seconds": self.seconds, "ok": self.ok,
                "reason": self.reason, "stores": self.stores, "notes": self.notes,
                "restore_seconds": self.restore_seconds}


NOT_CHECKED = ("clickhouse dictionaries are not checked by the drill: a restore creates them "
               "at the switch from their live source (`platformdb health` loads them)")


def backup_dir_of(path: Path) -> Path:
    """The backup folder a set at ``path`` belongs to (where its state is recorded)."""
    return path.parent if path.is_file() or is_set(path) else path


def verify_set(target: Context | Endpoints, path: Path, *, record: bool = True) -> Drilled:
    """Restore the set at ``path`` (or the newest set in it) into scratch targets, check
    it there, drop the scratch copies, and (``record``) record the outcome beside the
    backups. A drill that finds a problem returns ``ok=False`` with a one-line reason."""
    ctx = context(target)
    started = time.monotonic()
    name = path.name
    drilled = Drilled(name, 0.0, False)
    staged: list[tuple[str, ReportedStage]] = []
    reported: list[Reported] = []

    def outcome() -> str:
        return ("the drill was stopped; the live targets were not touched"
                + (f" and the scratch copies of {', '.join(n for n, _ in staged)} were dropped"
                   if staged else ""))

    try:
        with when_interrupted(outcome), opened(path) as found:
            found_set = find_set(found)
            drilled.set = name = path.name if path.is_file() else found_set.folder.name
            drilled.stores = list(found_set.parts)
            with ctx.progress.task(f"backup verify {name}", total=2 * len(found_set.parts),
                                   unit="steps") as overall, \
                    ctx.progress.task(f"backup verify: checking {name}") as checking:
                for store, part in found_set.parts.items():
                    read_manifest(part, store)  # every file of every part, before anything
                journal = begin_journal(ctx, "backup verify", stores=list(found_set.parts),
                                        path=str(path.resolve()),
                                        scratch_folders=unpacked(found))
                try:
                    problems: list[str] = []
                    for store, part in found_set.parts.items():
                        if journal is not None:
                            journal.part(store, phase="staging", folder=str(part.resolve()))
                        wrapped = Reported(ctx.store(store), ctx.progress, overall, checking)
                        reported.append(wrapped)
                        staging = time.monotonic()
                        stage = wrapped.stage(part, force=True, verify=True)
                        drilled.restore_seconds += time.monotonic() - staging
                        assert isinstance(stage, ReportedStage)
                        staged.append((store, stage))
                        if journal is not None:
                            journal.part(store, phase="staged", **journal_record(stage))
                        crash_point(f"verify:staged:{store}")
                        with ctx.progress.task(f"backup verify {store}: checking the copy"):
                            problems.extend(_checks(ctx, store, stage, drilled.notes))
                        overall.advance()
                        if problems:
                            break
                    if problems:
                        drilled.reason = problems[0]
                    else:
                        drilled.ok = True
                finally:
                    _discard(staged, journal)
            if "clickhouse" in found_set.parts:
                drilled.notes.append(NOT_CHECKED)
    except PlatformDBError as exc:
        drilled.reason = one_line(str(exc))
    drilled.seconds = round(time.monotonic() - started, 3)
    drilled.restore_seconds = round(drilled.restore_seconds, 3)
    if record:
        record_verification(backup_dir_of(path), Verification(
            name, datetime.now(UTC), drilled.seconds, drilled.ok, drilled.reason,
            drilled.restore_seconds))
    return drilled


def required(target: Context | Endpoints, folder: Path) -> None:
    """The drill of a set just written (``backup all --verify``): :class:`CheckFailed`
    unless it passes."""
    drilled = verify_set(target, folder)
    if not drilled.ok:
        raise CheckFailed(f"the backup set {folder} failed its restore drill: {drilled.reason};"
                          " it is kept for inspection and not recorded as good")


def _discard(staged: list[tuple[str, ReportedStage]], journal: Any) -> None:
    """Drop every scratch copy, newest first; the journal ends when all are gone."""
    clean = True
    for store, stage in reversed(staged):
        try:
            stage.discard()
            if journal is not None:
                journal.part(store, phase="discarded")
        except Exception:  # keep dropping the others; `recover` finds what is left
            clean = False
    if journal is not None and clean:
        journal.finish()


def _checks(ctx: Context, store: str, stage: ReportedStage, notes: list[str]) -> list[str]:
    """The checks beyond counts and checksums (which the staging made) on one copy."""
    inner: Any = stage.staged
    if store == "postgresql":
        scratch = replace(ctx, endpoints=ctx.endpoints.replace(
            urls={store: str(inner.scratch_url)}))
        with scratch.store(store).open_migrator() as migrator:
            drift = [d for d in migrator.drift() if d.object not in NOT_FINGERPRINTED]
        if drift:  # the scratch database's own grants are the live one's at the switch
            return [f"postgresql: the restored schema differs from what the migrations "
                    f"build in {len(drift)} place(s), first {drift[0].describe()[:200]}"]
        return []
    if store == "clickhouse":
        client, found = inner.client, inner.staged
        creates = {name: query for name, _, query in found.statements}
        problems = []
        for view in _rollups(found.statements, found.source):
            if view.source not in found.tables or view.target not in found.tables:
                continue
            buckets = _differing_buckets(client, found.source, found.scratch, view,
                                         creates[view.source])
            if buckets:
                problems.append(f"clickhouse: rollup {view.target} differs from the rollup of "
                                f"{view.source} in {len(buckets)} bucket(s), first {buckets[0]}")
        return problems
    if store == "redis":
        found = inner.staged
        entries = _entries(found.conn, list(found.names), found.names)
        return [f"redis: {problem}" for problem in queue_problems(entries)]
    return []


_STRUCTURES = ("", ":processing", ":delayed", ":dead")


def queue_problems(entries: Iterable[dict[str, Any]]) -> list[str]:
    """The queue invariants broken in backed-up Redis ``entries`` (``{"key", "type",
    "value"}``, base64 as the backup writes them): a member of a queue's ready,
    processing, delayed or dead structure without its job hash, or a job hash in no
    structure or in more than one (or twice in one)."""
    keys: dict[bytes, tuple[str, Any]] = {}
    for entry in entries:
        keys[_unb64(entry["key"])] = (str(entry["type"]), entry["value"])
    jobs = [key for key in keys if b":job:" in key and b"queue:{" in key]
    bases = {key.split(b":job:", 1)[0] for key in jobs}
    bases.update(key for key, (kind, _) in keys.items()
                 if kind == "list" and key.endswith(b"}") and b"queue:{" in key)
    problems: list[str] = []
    for base in sorted(bases):
        seen: dict[bytes, int] = defaultdict(int)
        for suffix in _STRUCTURES:
            kind, value = keys.get(base + suffix.encode(), ("none", []))
            members = ([_unb64(m) for m, _ in value] if kind == "zset" else
                       [_unb64(m) for m in value] if kind == "list" else [])
            for member in members:
                seen[member] += 1
                if base + b":job:" + member not in keys:
                    problems.append(f"{base.decode(errors='replace')}{suffix} holds "
                                    f"{member.decode(errors='replace')} without its job hash")
        prefix = base + b":job:"
        for key in jobs:
            if key.startswith(prefix) and seen.get(key[len(prefix):], 0) != 1:
                count = seen.get(key[len(prefix):], 0)
                problems.append(f"job {key.decode(errors='replace')} is in {count} queue "
                                "structures (expected exactly one)")
    return problems
