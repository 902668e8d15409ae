"""Backups of every store into folders with manifests, and restores from them.

``backup(settings, "all", out)`` writes one folder per store under ``out``;
``restore(settings, store, path)`` checks the manifest before touching the
target. See :mod:`platformdb.backup.postgres`, :mod:`.redis`, :mod:`.clickhouse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from platformdb import embedded
from platformdb.backup.manifest import MANIFEST, TableState
from platformdb.config import Settings, mask_password
from platformdb.errors import ValidationError

STORES = ("postgresql", "clickhouse", "redis")


@dataclass(frozen=True)
class Restored:
    store: str
    target: str
    tables: dict[str, TableState]
    mismatches: list[str]


def check_store(store: str, allow_all: bool = True) -> list[str]:
    if store == "all" and allow_all:
        return list(STORES)
    if store not in STORES:
        choices = ", ".join((*STORES, "all") if allow_all else STORES)
        raise ValidationError(f"unknown store {store!r}; choose one of {choices}")
    return [store]


def backup(settings: Settings, store: str, out_dir: Path, *, directory_format: bool = False,
           jobs: int = 1) -> list[Path]:
    """Back up ``store`` (or ``all``) into new folders under ``out_dir``."""
    folders: list[Path] = []
    for name in check_store(store):
        if name == "postgresql":
            from platformdb.backup import postgres

            url = embedded.resolve(settings, postgres=True).postgres_url
            assert url is not None
            folders.append(postgres.backup(url, out_dir, directory_format=directory_format,
                                           jobs=jobs))
        elif name == "redis":
            from platformdb.backup import redis

            rurl = embedded.resolve(settings, redis=True).redis_url
            assert rurl is not None
            folders.append(redis.backup(rurl, out_dir))
        else:
            from platformdb.backup import clickhouse
            from platformdb.clickhouse import target_of

            folders.append(clickhouse.backup(target_of(settings), out_dir))
    return folders


def find_backups(path: Path) -> dict[str, Path]:
    """The store folders in ``path``: the folder itself, or its newest child per store."""
    if (path / MANIFEST).is_file():
        return {path.name.split("-", 1)[0]: path}
    found: dict[str, Path] = {}
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if (child / MANIFEST).is_file():
                found[child.name.split("-", 1)[0]] = child  # sorted: the newest wins
    if not found:
        raise ValidationError(f"no backup found at {path}")
    return found


def restore(settings: Settings, store: str, path: Path, *, force: bool = False,
            verify: bool = False) -> list[Restored]:
    """Restore ``store`` (or ``all``) from ``path``; manifests are checked first."""
    available = find_backups(path)
    wanted = check_store(store)
    if store != "all":
        if store not in available:
            raise ValidationError(f"{path} holds no {store} backup")
    else:
        wanted = [name for name in wanted if name in available]
    from platformdb.backup.manifest import read_manifest

    for name in wanted:  # every manifest and file is checked before any target is touched
        read_manifest(available[name], name)
    results: list[Restored] = []
    for name in wanted:
        folder = available[name]
        if name == "postgresql":
            from platformdb.backup import postgres

            url = embedded.resolve(settings, postgres=True).postgres_url
            assert url is not None
            report = postgres.restore(folder, url, force=force, verify=verify)
            results.append(Restored(name, mask_password(url), report.tables, report.mismatches))
        elif name == "redis":
            from platformdb.backup import redis

            rurl = embedded.resolve(settings, redis=True).redis_url
            assert rurl is not None
            rreport = redis.restore(folder, rurl, force=force, verify=verify)
            results.append(Restored(name, rreport.target, rreport.types, rreport.mismatches))
        else:
            import os

            from platformdb.backup import clickhouse
            from platformdb.clickhouse import dictionaries, target_of
            from platformdb.migrate.clickhouse import postgres_placeholders

            def placeholders() -> dict[str, str]:
                # only a dictionary whose dump hides a password (003's) needs a login: the
                # dictionaries' own, never the owner's
                login = os.environ.get(dictionaries.ENV_URL, "").strip()
                if not login:
                    pg = embedded.resolve(settings, postgres=True).postgres_url
                    assert pg is not None
                    login = dictionaries.provision_login(pg, dictionaries.secret_file(
                        settings.home))
                return postgres_placeholders(login)

            results.append(clickhouse.restore(target_of(settings), folder, force=force,
                                              verify_after=verify, placeholders=placeholders))
    return results
