"""Tenant import and delete killed (kill -9) at every phase: re-running the command (or
`platformdb recover`) finishes or undoes it; afterwards the org is wholly present
(import) or wholly absent (delete) in every store, the other org is byte-identical, and
no journal, staging database or scratch folder is left.

The CLI runs in a subprocess with ``PLATFORMDB_CRASH_AT=<phase>`` on a platform of the
module's own (PostgreSQL database, chDB path, Redis server), as
tests/ops/test_restore_journal.py does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from platformdb import embedded, journal
from platformdb.clickhouse import connect as ch_connect
from platformdb.clickhouse import rows
from platformdb.ops import backup as backups
from platformdb.ops import migrations, tenant
from platformdb.redis import connect as redis_connect
from platformdb.redis import functions
from platformdb.types import Endpoints
from tests.clickhouse.conftest import add_dictionary_views
from tests.conftest import drop_database, embedded_admin_url, fresh_name, migrated_database
from tests.ops.tenant.conftest import Deployment, add_clickhouse_rows, add_org, settle

REPO = Path(__file__).resolve().parents[3]

IMPORT_PHASES = [
    "tenant-import:unpacked",
    "tenant-import:staging:postgresql", "tenant-import:staged:postgresql",
    "tenant-import:staging:clickhouse", "tenant-import:staged:clickhouse",
    "tenant-import:staging:redis", "tenant-import:staged:redis",
    "switching:clickhouse", "switched:clickhouse", "switching:redis", "switched:redis",
    "switching:postgresql", "switched:postgresql", "committing", "committed:clickhouse",
    "tenant-import:loaded",
]
"""Every crash point of `tenant import`, in order (PostgreSQL commits at its switch)."""
COMMITTED = IMPORT_PHASES.index("switched:postgresql")

DELETE_PHASES = [
    "tenant-delete:begun",
    "tenant-delete:deleting:postgresql", "tenant-delete:deleted:postgresql",
    "tenant-delete:deleting:clickhouse", "tenant-delete:deleted:clickhouse",
    "tenant-delete:deleting:redis", "tenant-delete:deleted:redis",
    "tenant-delete:erasing", "tenant-delete:erased",
]


@dataclass
class Platform:
    endpoints: Endpoints
    env: dict[str, str]
    archive: Path
    alpha: str
    bravo: str
    alpha_counts: dict[str, dict[str, int]]

    @property
    def home(self) -> Path:
        assert self.endpoints.home is not None
        return self.endpoints.home

    def cli(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if crash_at:
            env[journal.CRASH_VARIABLE] = crash_at
        return subprocess.run([sys.executable, "-m", "platformdb.cli", *args], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=300)

    def deployment(self, client: object) -> Deployment:
        return Deployment(self.endpoints, "", client)  # type: ignore[arg-type]

    def digest(self, org: str) -> dict[str, dict[str, str]]:
        """Per store; Redis without the families that expire on their own (cache, rate
        limits, sessions: a long run outlives their TTLs)."""
        with ch_connect(self.endpoints.clickhouse or "") as client:
            settle(self.deployment(client))
        found = tenant.checksums(self.endpoints, org)
        found["redis"] = {k: v for k, v in found["redis"].items() if k in ("job",)}
        return found

    def counts(self, org: str) -> dict[str, dict[str, int]]:
        with ch_connect(self.endpoints.clickhouse or "") as client:  # rollups: merged rows
            settle(self.deployment(client))
        return tenant.remaining(self.endpoints, uuid.UUID(org))

    def staging(self) -> list[str]:
        with ch_connect(self.endpoints.clickhouse or "") as client:
            return [str(r[0]) for r in rows(client, "SELECT name FROM system.databases WHERE"
                                                    " name LIKE '%\\\\_tenant\\\\_%'")]

    def folders(self) -> list[Path]:
        return sorted([*self.archive.parent.glob(".platformdb-tenant*"),
                       *self.home.glob(".platformdb-tenant*")])


def absent(found: dict[str, dict[str, int]]) -> bool:
    return not any(n for tables in found.values() for n in tables.values())


@pytest.fixture(scope="module")
def platform(stack_home: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    work = stack_home / "test-clusters" / uuid.uuid4().hex[:12]
    server = embedded.EmbeddedRedis(work / "redis")
    server.start()
    name = fresh_name("tcrash")
    pg_admin_url = embedded_admin_url(stack_home)  # kill points: the platform's own journal
    url = migrated_database(pg_admin_url, name)    # and switches, one server is enough
    try:
        add_dictionary_views(url)
        home = tmp_path_factory.mktemp("tcrash") / "home"
        home.mkdir()
        found = Endpoints(postgres=url, clickhouse=f"chdb://{home.parent / 'ch'}",
                          redis=server.url(), home=home)
        migrations.up(found, ["clickhouse"])
        client = redis_connect(server.url())
        functions.load(client)
        client.close()
        with ch_connect(found.clickhouse or "") as ch:
            dep = Deployment(found, "", ch)
            alpha = add_org(dep, "alpha", ch_rows=200)
            bravo = add_org(dep, "bravo", ch_rows=200)
        archive = home.parent / "alpha.tar"
        tenant.export_tenant(found, "alpha", archive)
        # what an import brings (an archive keeps no sessions, cache or rate limits)
        tenant.delete_tenant(found, alpha, yes=True, force=True)
        tenant.import_tenant(found, archive)
        base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
        base.update(PLATFORMDB_POSTGRES_URL=url, PLATFORMDB_CLICKHOUSE_URL=found.clickhouse or "",
                    PLATFORMDB_REDIS_URL=server.url(), PLATFORMDB_HOME=str(home))
        platform = Platform(found, base, archive, alpha, bravo, {})
        platform.alpha_counts = platform.counts(alpha)
        yield platform
        backups.recover(found, cleanup=True)
    finally:
        drop_database(pg_admin_url, name)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def ensure_alpha(platform: Platform, present: bool) -> None:
    held = not absent(platform.counts(platform.alpha))
    if present and not held:
        tenant.import_tenant(platform.endpoints, platform.archive)
    elif not present and held:
        tenant.delete_tenant(platform.endpoints, platform.alpha, yes=True, force=True)


def nothing_left(platform: Platform) -> None:
    assert journal.journals(platform.home) == []
    assert platform.staging() == []
    assert platform.folders() == []


@pytest.mark.slow
@pytest.mark.parametrize("phase", IMPORT_PHASES)
def test_import_killed_at_any_phase_then_run_again(platform: Platform, phase: str) -> None:
    ensure_alpha(platform, present=False)
    before = platform.digest(platform.bravo)
    killed = platform.cli("tenant", "import", str(platform.archive), crash_at=phase)
    assert killed.returncode == -9, f"never reached {phase}: {killed.stderr}"
    assert journal.unfinished(platform.home), "no journal left by the killed import"
    again = platform.cli("tenant", "import", str(platform.archive))
    assert again.returncode == 0, again.stderr
    assert platform.counts(platform.alpha) == platform.alpha_counts  # wholly present
    assert platform.digest(platform.bravo) == before
    nothing_left(platform)


@pytest.mark.slow
@pytest.mark.parametrize("phase", IMPORT_PHASES[::3])
def test_import_killed_then_recovered(platform: Platform, phase: str) -> None:
    ensure_alpha(platform, present=False)
    before = platform.digest(platform.bravo)
    killed = platform.cli("tenant", "import", str(platform.archive), crash_at=phase)
    assert killed.returncode == -9, f"never reached {phase}: {killed.stderr}"
    recovered = platform.cli("recover")
    assert recovered.returncode == 0, recovered.stderr
    found = platform.counts(platform.alpha)
    if IMPORT_PHASES.index(phase) >= COMMITTED:
        assert found == platform.alpha_counts
    else:
        assert absent(found), found
    assert platform.digest(platform.bravo) == before
    nothing_left(platform)


@pytest.mark.slow
@pytest.mark.parametrize("phase", DELETE_PHASES)
def test_delete_killed_at_any_phase_then_run_again(platform: Platform, phase: str) -> None:
    ensure_alpha(platform, present=True)
    before = platform.digest(platform.bravo)
    killed = platform.cli("tenant", "delete", "alpha", "--yes", "--force", crash_at=phase)
    assert killed.returncode == -9, f"never reached {phase}: {killed.stderr}"
    if DELETE_PHASES.index(phase) % 2:  # by slug again, or by `platformdb recover`
        again = platform.cli("tenant", "delete", "alpha", "--yes", "--force")
    else:
        again = platform.cli("recover")
    assert again.returncode == 0, again.stderr
    assert absent(platform.counts(platform.alpha))
    assert platform.digest(platform.bravo) == before
    nothing_left(platform)


REPLACE_PHASES = ["tenant-import:saved", "switched:clickhouse", "switched:redis",
                  "switched:postgresql"]


@pytest.mark.slow
@pytest.mark.parametrize("phase", REPLACE_PHASES)
def test_replace_killed_then_recovered_is_all_old_or_all_new(platform: Platform,
                                                            phase: str) -> None:
    ensure_alpha(platform, present=True)
    with ch_connect(platform.endpoints.clickhouse or "") as client:  # old differs from new
        add_clickhouse_rows(platform.deployment(client), platform.alpha, 7)
    old = platform.counts(platform.alpha)
    before = platform.digest(platform.bravo)
    killed = platform.cli("tenant", "import", str(platform.archive), "--replace", "--force",
                          crash_at=phase)
    assert killed.returncode == -9, f"never reached {phase}: {killed.stderr}"
    recovered = platform.cli("recover")
    assert recovered.returncode == 0, recovered.stderr
    found = platform.counts(platform.alpha)
    if phase == "switched:postgresql":
        assert found == platform.alpha_counts
    else:
        assert found == old
    assert platform.digest(platform.bravo) == before
    nothing_left(platform)
    tenant.delete_tenant(platform.endpoints, platform.alpha, yes=True, force=True)
