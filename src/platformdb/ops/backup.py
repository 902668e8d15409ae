"""``platformdb backup | restore``: which stores, and where their backups go or come from.

The formats are the stores' (``stores/<store>/backup.py``); sets, archives, the
record of good backups and the staged switch are the generic machinery of
:mod:`platformdb.backup`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platformdb.backup import Staged
from platformdb.backup.archive import has_manifest, opened, pack
from platformdb.backup.manifest import read_manifest
from platformdb.backup.sets import (
    backup_set,
    find_set,
    journal_record,
    part_for,
    restore_set,
    set_parts_verified,
    stage_and_switch,
)
from platformdb.backup.state import record, verified
from platformdb.errors import Hint, ValidationError
from platformdb.journal import FORWARD_PHASES, Journal, running, unfinished
from platformdb.ops.context import Context, context
from platformdb.progress import Progress, Task, folder_bytes
from platformdb.stores import registry
from platformdb.stores.base import Store
from platformdb.types import Endpoints, Restored

__all__ = ["Recovered", "backup", "has_manifest", "leftovers", "recover", "restore"]


def backup(target: Context | Endpoints, names: list[str] | None, out_dir: Path, *,
           archive: bool = False, check: Callable[[Context, Path], None] | None = None,
           **options: Any) -> list[Path]:
    """Back up each store of ``names`` into its own folder under ``out_dir``.

    ``names=None`` (``backup all``) writes one backup set instead: see
    :mod:`platformdb.backup.sets`. Each backup is checked against its manifest and
    recorded as its store's last good backup in ``out_dir``
    (:mod:`platformdb.backup.state`, read by the exporter). ``archive``: each folder
    becomes one ``.tar`` file (:mod:`platformdb.backup.archive`). Each store's backup
    reports the bytes written so far to the context's progress.

    ``check`` (``backup all --verify``: :func:`platformdb.ops.drill.required`): run on
    the set right after it is written; its parts are recorded as the last good backups
    only if it returns (a set it fails is kept for inspection, not recorded, and the
    backup fails).
    """
    if check is not None and names is not None:
        raise ValidationError("--verify drills a whole set: use it with `backup all`")
    ctx = context(target)
    stores = ctx.stores(names)
    prepare_folder(out_dir)
    reported: list[Reported] = []
    try:
        with ctx.progress.task(f"backup {'all' if names is None else ', '.join(names)}",
                               total=len(stores), unit="steps") as overall:
            reported = [Reported(store, ctx.progress, overall) for store in stores]
            if names is None:
                folder = backup_set(reported, out_dir, **options)
                with removed_on_failure(folder) as made:
                    goods = set_parts_verified(out_dir, folder)
                if check is not None:
                    check(ctx, folder)
                with removed_on_failure(folder) as made:
                    if archive:
                        folder = made.path = pack(folder)
                        goods = [replace(good,
                                         folder=f"{folder.name}/{good.folder.split('/', 1)[1]}")
                                 for good in goods]
                    record(out_dir, goods)
                return [folder]
            written = []
            for store in reported:
                started = datetime.now(UTC)
                folder = store.backup(out_dir, **options)
                with removed_on_failure(folder) as made:
                    good = verified(out_dir, store.name, folder, started, datetime.now(UTC))
                    if archive:
                        folder = made.path = pack(folder)
                        good = replace(good, folder=folder.name, bytes=folder.stat().st_size)
                    record(out_dir, [good])
                written.append(folder)
            return written
    except KeyboardInterrupt as stop:
        done = [store.name for store in reported if store.written] if names else []
        stop.add_note((f"the backups of {', '.join(done)} are complete; " if done else "")
                      + "the unfinished backup was removed")
        raise


@dataclass
class Made:
    path: Path


@contextmanager
def removed_on_failure(path: Path) -> Iterator[Made]:
    """A backup written but not yet checked, packed and recorded: any failure (a full disk
    while packing) removes it, so that nothing that looks like a backup is left."""
    made = Made(path)
    try:
        yield made
    except BaseException:
        for leftover in {path, made.path}:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        raise


DEFAULT_DIR = Path("backups")
"""Where ``backup`` writes unless told (``--out``)."""
DUMP_SUFFIXES = (".tar", ".sql", ".dump", ".gz", ".pgdump")


def candidates(incomplete: str) -> list[str]:
    """What ``restore ... PATH`` may be, for shell completion: in the folder typed so far
    (``backups/`` when nothing is typed yet), the backup sets, store backups, archives and
    dump files, and folders to descend into."""
    if not incomplete and DEFAULT_DIR.is_dir():
        incomplete = f"{DEFAULT_DIR}/"
    typed = Path(incomplete)
    folder, prefix = (typed, "") if incomplete.endswith("/") or not incomplete else (
        typed.parent, typed.name)
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    found = []
    for child in children:
        if not child.name.startswith(prefix) or child.name.startswith("."):
            continue
        shown = str(child) if incomplete else child.name
        if child.is_dir() or child.name.endswith(DUMP_SUFFIXES):
            found.append(shown)
    return found


def prepare_folder(out_dir: Path) -> None:
    """Create ``out_dir`` (and its parents) for the backups, saying why it cannot be."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError(f"{out_dir} is a file; name a folder for the backups")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"cannot create the backup folder {out_dir}: "
                              f"{exc.strerror or exc}") from exc


def restore(target: Context | Endpoints, names: list[str] | None, path: Path, *,
            force: bool = False, verify: bool = False,
            force_older_schema: bool = False) -> list[Restored]:
    """Restore ``names`` from ``path``, all or nothing.

    ``names=None`` (``restore all``) restores a backup set (``path`` or the newest
    set in it). Named stores take their backup from a part folder, a set, or
    the newest of either in ``path``. Every manifest is checked before any
    store is touched; every store is staged before any is switched in.
    ``path`` may also be a file: a ``.tar`` that ``backup --archive`` wrote (of a
    folder or a set), or, for PostgreSQL, a ``pg_dump`` file (plain SQL, custom or
    tar format), which is staged and switched in the same way. Each stage (checking,
    staging, switching in) of each store reports to the context's progress.

    A backup whose migration ledger is behind the target's (or empty, where the target
    has one) is refused: restoring it would silently take the schema back. With
    ``force_older_schema`` it is restored and the store migrated up to the current head
    (:func:`schema_guard`).
    """
    ctx = context(target)
    chosen = registry.check_stores(names) if names is not None else list(registry.names())
    recover(ctx)  # a restore killed before this one: finish or undo it first
    reported: list[Reported] = []

    def wrap(store: Store) -> Reported:
        found = Reported(store, ctx.progress, overall, checking)
        reported.append(found)
        return found

    try:
        with ctx.progress.task(f"restore {'all' if names is None else ', '.join(chosen)}",
                               total=2 * len(chosen), unit="steps") as overall, \
                ctx.progress.task(f"restore: checking {path.name or path}") as checking, \
                opened(path) as found:
            journal = begin_journal(ctx, "restore", stores=chosen, path=str(path.resolve()),
                                    scratch_folders=unpacked(found))
            if names is None:
                every = {store.name: wrap(store) for store in ctx.stores()}
                older = OlderSchema(ctx, schema_guard(ctx, find_set(found).parts,
                                                      force_older_schema))
                return older.after(restore_set(every, found, force=force, verify=verify,
                                               journal=journal, before_switch=older.before))
            if found.is_file():
                if chosen != ["postgresql"]:
                    raise ValidationError(f"{path} is a file but no platformdb archive: only "
                                          "PostgreSQL restores from a pg_dump file")
                return stage_and_switch([(wrap(ctx.store("postgresql")), found)],
                                        force=force, verify=verify, journal=journal)
            parts = [(name, part_for(found, name)) for name in chosen]
            for name, part in parts:
                read_manifest(part, name)
            older = OlderSchema(ctx, schema_guard(ctx, dict(parts), force_older_schema))
            return older.after(stage_and_switch(
                [(wrap(ctx.store(name)), part) for name, part in parts],
                force=force, verify=verify, journal=journal, before_switch=older.before))
    except KeyboardInterrupt as stop:
        stop.add_note(restore_outcome(reported))
        raise


def schema_guard(ctx: Context, parts: dict[str, Path], force_older_schema: bool) -> list[str]:
    """The stores whose backup in ``parts`` has a migration ledger behind the target's
    (migrations the target applied that the backup lacks, or none at all where the target
    has some). Without ``force_older_schema`` any such store refuses the restore before
    anything is touched. A target that cannot be read (absent, empty) is no objection."""
    behind: list[str] = []
    for name, folder in parts.items():
        if not ctx.store(name).ledger_in_backups:
            continue
        backed_up = set(read_manifest(folder, name).migrations)
        applied = _applied(ctx, name)
        missing = sorted(applied - backed_up)
        if not applied or not missing:
            continue
        if not force_older_schema:
            what = ("holds no migration ledger" if not backed_up else
                    f"lacks {len(missing)} migration(s) the target has applied "
                    f"(first: {missing[0]})")
            raise ValidationError(
                f"the {name} backup {folder.name} {what}: restoring it would take the schema "
                "back; nothing was changed",
                hint=Hint(flag="--force-older-schema",
                          does="to restore it and migrate it up to the current head"))
        behind.append(name)
    return behind


def _applied(ctx: Context, name: str) -> set[str]:
    """The target's applied migrations; none when it has no database or no ledger."""
    try:
        with ctx.store(name).open_migrator() as migrator:
            return {f"{m.version:03d}_{m.name}" for m in migrator.driver.applied()}
    except Exception:  # no database, no ledger: nothing to go back from
        return set()


class OlderSchema:
    """Stores restored from a backup behind the target's migrations
    (``--force-older-schema``): each is migrated up to the current head -- its staged
    copy before the switch where the store stages into a database of its own (PostgreSQL),
    else right after the restore."""

    def __init__(self, ctx: Context, behind: list[str]) -> None:
        self.ctx = ctx
        self.behind = behind
        self.done: set[str] = set()

    def before(self, staged: Sequence[Staged]) -> None:
        for stage in staged:
            name = stage.report.store
            inner = getattr(stage, "staged", stage)
            url = getattr(inner, "scratch_url", None)
            if name in self.behind and isinstance(url, str):
                scratch = replace(self.ctx, endpoints=self.ctx.endpoints.replace(
                    urls={name: url}))
                scratch.store(name).migrate_up()
                self.done.add(name)

    def after(self, results: list[Restored]) -> list[Restored]:
        for name in self.behind:
            if name not in self.done:
                self.ctx.store(name).migrate_up()
        return results


def begin_journal(ctx: Context, operation: str, **intent: Any) -> Journal | None:
    """The journal of an operation that is about to change things (None: the context
    has no home to keep one in, e.g. a Python caller's bare endpoints)."""
    home = ctx.endpoints.home
    return Journal.begin(home, operation, **intent) if home is not None else None


def unpacked(found: Path) -> list[str]:
    """The scratch folder an archive was unpacked into (a killed restore leaves it)."""
    parent = found.parent
    return [str(parent.resolve())] if parent.name.startswith(
        (".platformdb-unpacked-", "platformdb-unpacked-")) else []


@dataclass
class Recovered:
    """What ``platformdb recover`` did: per interrupted operation and store, and the
    leftovers it removed (``--cleanup``)."""

    operations: list[dict[str, Any]] = field(default_factory=list)
    removed: dict[str, list[str]] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    """Operations left for later: a store they touched is not reachable from here."""


def recover(target: Context | Endpoints, *, cleanup: bool = False) -> Recovered:
    """Finish or roll back every operation a crash interrupted (their journals under
    ``$PLATFORMDB_HOME/journal/``), so that every store is all-old or all-new.

    A restore killed before it switched anything is rolled back (its scratch copies are
    dropped); one killed while switching or committing is rolled forward (every store
    had been staged and verified) and its replaced contents dropped; one killed while
    putting stores back after a failure finishes putting them back. ``cleanup``: also
    remove what restores leave only when interrupted and no journal names (scratch and
    aside databases, staging keys), found by their names, unless an operation is running.
    """
    ctx = context(target)
    done = Recovered()
    home = ctx.endpoints.home
    for journal in unfinished(home):
        if str(journal.data.get("operation", "")).startswith("tenant "):
            from platformdb.ops.tenant import recover_journal  # tenant import/delete/export

            done.operations.append(recover_journal(ctx, journal))
            continue
        absent = [name for name in journal.parts if ctx.store(name).url is None]
        if absent:  # e.g. `restore postgresql` did not start the embedded Redis: later
            done.waiting.append(f"{journal.id} (needs {', '.join(absent)})")
            continue
        forward = journal.phase in FORWARD_PHASES
        outcome: dict[str, Any] = {"operation": journal.data["operation"], "id": journal.id,
                                   "phase": journal.phase,
                                   "action": "finished" if forward else "rolled back",
                                   "stores": {}}
        for name, part in journal.parts.items():
            if part.get("phase") in ("committed", "discarded", "undone", "planned"):
                continue
            if part.get("phase") == "staging":  # its scratch has no name in the journal yet
                continue  # (killed inside the stage): found by its name below
            outcome["stores"][name] = ctx.store(name).recover(part, forward=forward)
            journal.part(name, phase="committed" if forward else "undone")
        unstaged = any(record.get("phase") == "staging" for record in journal.parts.values())
        for folder in journal.data.get("intent", {}).get("scratch_folders", []):
            shutil.rmtree(folder, ignore_errors=True)
        journal.finish()
        done.operations.append(outcome)
        if unstaged:  # killed inside a stage, before its scratch was named in the journal
            cleanup = True
    if cleanup and not running(home):
        for store in ctx.stores():
            found = store.leftovers() if store.url is not None else []
            if found:
                store.drop_leftovers(found)
                done.removed[store.name] = found
    return done


def leftovers(target: Context | Endpoints) -> dict[str, list[str]]:
    """What interrupted operations left, per store (and ``journal``: the operations
    ``platformdb recover`` has to finish or roll back); empty when nothing is left. A
    store that cannot be reached is left out (its own health row says so)."""
    ctx = context(target)
    found: dict[str, list[str]] = {}
    home = ctx.endpoints.home
    pending = [f"{journal.data['operation']} {journal.id} (stopped while {journal.phase})"
               for journal in unfinished(home)]
    if pending:
        found["journal"] = pending
    if running(home):
        return found  # a restore is running: its scratch copies are not leftovers
    for store in ctx.stores():
        if store.url is None:
            continue
        names = _leftovers_of(store)
        if names:
            found[store.name] = names
    return found


def restore_outcome(reported: list[Reported]) -> str:
    """What an interrupted restore left, in one clause."""
    switched = [r.name for r in reported if r.state in ("switched", "committed")]
    undone = [r.name for r in reported if r.state == "undone"]
    if switched and len(switched) == len(reported):
        return (f"{', '.join(switched)} restored (stopped while the previous contents were "
                "being dropped)")
    if switched:
        others = [r.name for r in reported if r.name not in switched]
        return (f"{', '.join(switched)} switched to the backup, {', '.join(others)} not: run "
                "the restore again")
    if undone:
        return f"nothing was restored: {', '.join(undone)} put back as they were"
    if all(r.state == "waiting" for r in reported):
        return "nothing was restored: stopped while the backup was being checked"
    return "nothing was restored: every target is as it was, staged copies dropped"


def _leftovers_of(store: Store) -> list[str]:
    try:
        return store.leftovers()
    except Exception:  # unreachable: the store's own health row says why
        return []


class Reported:
    """A store whose backup and restore stages report to a progress (and remember how far
    a restore got, for the message of an interrupted one). Stands in for the store in the
    generic machinery (:mod:`platformdb.backup.sets`)."""

    def __init__(self, store: Store, progress: Progress, overall: Task,
                 checking: Task | None = None) -> None:
        self.store = store
        self.progress = progress
        self.overall = overall
        self.checking = checking
        self.state = "waiting"
        self.written = False

    @property
    def name(self) -> str:
        return self.store.name

    def backup(self, out_dir: Path, **options: Any) -> Path:
        before = frozenset(entry.name for entry in out_dir.iterdir()) if out_dir.is_dir() \
            else frozenset()
        with self.progress.task(f"backup {self.name}", unit="bytes") as task:
            task.measure(folder_bytes(out_dir, besides=before))
            folder = self.store.backup(out_dir, **options)
        self.written = True
        self.overall.advance()
        return folder

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> Staged:
        if self.checking is not None:
            self.checking.close()  # every part was checked before the first stage
        self.state = "staging"
        with self.progress.task(f"restore {self.name}: staging beside the target"):
            staged = self.store.stage(folder, force=force, verify=verify)
        self.state = "staged"
        self.overall.advance()
        return ReportedStage(self, staged)


class ReportedStage:
    """A store's staged restore, switched in with its progress reported."""

    def __init__(self, owner: Reported, staged: Staged) -> None:
        self.owner = owner
        self.staged = staged
        self.report = staged.report

    def _step(self, what: str) -> Task:
        return self.owner.progress.task(f"restore {self.owner.name}: {what}")

    def switch(self) -> None:
        with self._step("switching in"):
            self.staged.switch()
        self.owner.state = "switched"
        self.owner.overall.advance()

    def undo(self) -> None:
        with self._step("putting the previous contents back"):
            self.staged.undo()
        self.owner.state = "undone"

    def commit(self) -> None:
        with self._step("dropping the previous contents"):
            self.staged.commit()
        self.owner.state = "committed"

    def discard(self) -> None:
        with self._step("dropping the staged copy"):
            self.staged.discard()
        self.owner.state = "discarded"

    def journal_record(self) -> dict[str, Any]:
        return journal_record(self.staged)
