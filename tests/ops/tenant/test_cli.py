"""`platformdb tenant ...` through the command's real entry point (in this process, which
holds the test's chDB path): output, --json, exit codes and one-line errors."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from tests.ops.tenant.conftest import Deployment, add_org, counts


class Cli:
    def __init__(self, dep: Deployment, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str], home: Path) -> None:
        self.dep, self.monkeypatch, self.capsys = dep, monkeypatch, capsys
        for name, value in (("PLATFORMDB_POSTGRES_URL", dep.endpoints.postgres),
                            ("PLATFORMDB_CLICKHOUSE_URL", dep.endpoints.clickhouse),
                            ("PLATFORMDB_REDIS_URL", dep.endpoints.redis),
                            ("PLATFORMDB_REDIS_PREFIX", dep.prefix),
                            ("PLATFORMDB_HOME", str(home))):
            assert value is not None
            monkeypatch.setenv(name, value)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from platformdb.cli import main

        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "argv", ["platformdb", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def cli(deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    return Cli(deployment, monkeypatch, capsys, tmp_path / "home")


def one_line_error(result: tuple[int, str, str], text: str) -> None:
    code, out, err = result
    assert code == 2, (out, err)
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert "Traceback" not in err and text in err, err


@pytest.mark.slow
def test_list_and_show_as_tables_and_json(cli: Cli, deployment: Deployment) -> None:
    a = add_org(deployment, "alpha")
    add_org(deployment, "bravo")
    code, out, _ = cli("tenant", "list")
    assert code == 0 and "alpha" in out and "bravo" in out and a in out
    code, out, _ = cli("tenant", "list", "--json")
    listed = {t["slug"]: t for t in json.loads(out)}
    assert code == 0 and set(listed) == {"alpha", "bravo"}
    assert listed["alpha"]["postgresql"]["users"]["rows"] == 3
    assert listed["alpha"]["clickhouse"]["campaign_metrics_raw"]["rows"] == 50
    assert listed["alpha"]["redis"]["job"] == 4 and listed["alpha"]["latest_activity"]
    code, out, _ = cli("tenant", "show", "alpha", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["id"] == a and shown["totals"]["postgresql_rows"] > 0
    assert shown["latest_metric_date"] is not None
    code, out, _ = cli("tenant", "show", a)
    assert code == 0 and "campaign_metrics_raw" in out and "users" in out


@pytest.mark.slow
def test_export_delete_import_on_the_command_line(cli: Cli, deployment: Deployment,
                                                  tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    archive = tmp_path / "alpha.tar"
    code, out, err = cli("tenant", "export", "alpha", "--out", str(archive), "--json")
    assert code == 0, err
    exported = json.loads(out)
    assert exported["counts"]["postgresql"]["users"] == 3 and archive.is_file()
    code, out, err = cli("tenant", "delete", "alpha", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["removed"]["clickhouse"]["campaign_metrics_raw"] == 50
    assert all(n == 0 for found in counts(deployment, a).values() for n in found.values())
    code, out, err = cli("tenant", "import", str(archive), "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["postgresql"] == exported["counts"]["postgresql"]
    code, out, err = cli("tenant", "import", str(archive), "--replace")
    assert code == 0 and "replaced alpha" in out, err
    code, out, err = cli("tenant", "delete", a, "--yes")
    assert code == 0 and "nothing is left" in out, err


def snapshot(deployment: Deployment, orgs: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    return {org: counts(deployment, org) for org in orgs}


@pytest.mark.slow
def test_bad_input_is_one_line_and_changes_nothing(cli: Cli, deployment: Deployment,
                                                   tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    good = tmp_path / "alpha.tar"
    assert cli("tenant", "export", "alpha", "--out", str(good))[0] == 0
    before = snapshot(deployment, [a, b])

    one_line_error(cli("tenant", "show", "nobody"), "unknown org 'nobody'")
    one_line_error(cli("tenant", "delete", "nobody", "--yes"), "unknown org")
    one_line_error(cli("tenant", "export", "nobody", "--out", str(tmp_path / "x.tar")),
                   "unknown org")
    one_line_error(cli("tenant", "show", "00000000-0000-4000-8000-000000000000"), "unknown org")
    one_line_error(cli("tenant", "delete", "alpha"), "pass --yes")
    one_line_error(cli("tenant", "export", "alpha", "--out", str(good)), "already exists")
    one_line_error(cli("tenant", "import", str(good)), "pass --replace")

    flipped = tmp_path / "flipped.tar"
    data = bytearray(good.read_bytes())
    with tarfile.open(good) as tar:
        member = tar.getmember("postgresql/users.csv")
    data[member.offset_data + 5] ^= 0x01
    flipped.write_bytes(bytes(data))
    one_line_error(cli("tenant", "import", str(flipped), "--replace"), "checksum")

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    one_line_error(cli("tenant", "import", str(truncated), "--replace"), "truncated")

    one_line_error(cli("tenant", "import", str(tmp_path / "missing.tar")), "does not exist")
    nothing = tmp_path / "not-a-tenant.tar"
    with tarfile.open(nothing, "w") as tar:
        tar.add(good, arcname="postgresql/users.csv")
    one_line_error(cli("tenant", "import", str(nothing), "--replace"), "no manifest.json")

    for name, change, text in (
            ("newer-format.tar", {"format_version": 99}, "archive format 99"),
            ("newer-schema.tar", {"schema": {"postgresql": 999, "clickhouse": 0, "redis": 0}},
             "postgresql schema version 999")):
        one_line_error(cli("tenant", "import", str(rewrite(good, tmp_path / name, change,
                                                           tmp_path / "home")),
                           "--replace"), text)
    assert snapshot(deployment, [a, b]) == before


def rewrite(archive: Path, target: Path, change: dict[str, object], home: Path) -> Path:
    """A copy of ``archive`` whose manifest says something else, signed again with the
    deployment's key in ``home`` (so the check after the signature is what refuses it)."""
    from platformdb.tenant import keys
    from tests.ops.tenant.forge import manifest_of, pack, unpack

    files = unpack(archive)
    return pack(files, target, ring=keys.KeyRing.of_home(home),
                manifest={**manifest_of(files), **change})
