"""Archives are signed by the exporting deployment's key: another deployment imports them
once their public key is named; rotated keys keep verifying; the keys are owner-only."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from platformdb.errors import ConfigError, ValidationError
from platformdb.ops import tenant
from platformdb.tenant import keys
from tests.ops.tenant.conftest import Deployment, add_org, counts, digest
from tests.ops.tenant.test_cli import Cli, one_line_error


def at_home(dep: Deployment, home: Path) -> Deployment:
    """The same stores as a deployment whose PLATFORMDB_HOME (and so key) is ``home``."""
    return Deployment(dep.endpoints.replace(home=home), dep.prefix, dep.ch)


def nothing(found: dict[str, dict[str, int]]) -> bool:
    return all(n == 0 for tables in found.values() for n in tables.values())


@pytest.mark.slow
def test_a_second_deployments_archive_imports_once_its_key_is_named(
        deployment: Deployment, elsewhere: Deployment, tmp_path: Path) -> None:
    source = at_home(deployment, tmp_path / "home-a")
    target = at_home(elsewhere, tmp_path / "home-b")
    a = add_org(source, "alpha")
    before = digest(source, a)
    exported = tenant.export_tenant(source.endpoints, "alpha", tmp_path / "a.tar",
                                    redis_prefix=source.prefix)
    shown = tenant.signing_keys(source.endpoints)
    assert exported.signed_by == shown.current.id

    with pytest.raises(ValidationError, match=f"signed by key {shown.current.id}, which this "
                                              "deployment does not trust") as caught:
        tenant.import_tenant(target.endpoints, tmp_path / "a.tar", redis_prefix=target.prefix)
    assert caught.value.hint is not None and "--trust-key" in (caught.value.hint.flag or "")
    assert nothing(counts(target, a))
    # someone else's key does not help
    stranger = keys.KeyRing(tmp_path / "stranger").current()[1]
    with pytest.raises(ValidationError, match="does not trust"):
        tenant.import_tenant(target.endpoints, tmp_path / "a.tar", redis_prefix=target.prefix,
                             trust=[stranger])

    # the key as `tenant keys show` prints it, in a file
    handed_over = tmp_path / "alpha-deployment.pub"
    handed_over.write_text(f"public key {shown.current.hex}\n")
    done = tenant.import_tenant(target.endpoints, tmp_path / "a.tar",
                                redis_prefix=target.prefix,
                                trust=[keys.trusted_key(str(handed_over))])
    assert done.signed_by == shown.current.id
    moved = digest(target, a)
    assert moved["postgresql"] == before["postgresql"]
    assert moved["clickhouse"] == before["clickhouse"]
    assert moved["redis"]["job"] == before["redis"]["job"]


@pytest.mark.slow
def test_archives_signed_before_a_rotation_still_import(deployment: Deployment,
                                                        tmp_path: Path) -> None:
    home = at_home(deployment, tmp_path / "home")
    a = add_org(home, "alpha")
    first = tenant.export_tenant(home.endpoints, a, tmp_path / "1.tar", redis_prefix=home.prefix)
    rotated = tenant.rotate_signing_key(home.endpoints)
    assert rotated.rotated_from is not None and rotated.rotated_from.id == first.signed_by
    assert [k.id for k in rotated.retired] == [first.signed_by]
    second = tenant.export_tenant(home.endpoints, a, tmp_path / "2.tar",
                                  redis_prefix=home.prefix)
    assert second.signed_by == rotated.current.id != first.signed_by
    for archive in (tmp_path / "1.tar", tmp_path / "2.tar"):
        tenant.delete_tenant(home.endpoints, a, yes=True, redis_prefix=home.prefix)
        assert tenant.import_tenant(home.endpoints, archive, redis_prefix=home.prefix).counts
    # a deployment that trusts only the new key refuses the old archive
    other = at_home(deployment, tmp_path / "other")
    tenant.delete_tenant(home.endpoints, a, yes=True, redis_prefix=home.prefix)
    with pytest.raises(ValidationError, match=f"signed by key {first.signed_by}"):
        tenant.import_tenant(other.endpoints, tmp_path / "1.tar", redis_prefix=home.prefix,
                             trust=[rotated.current])


def test_keys_are_created_on_first_use_owner_only(tmp_path: Path) -> None:
    ring = keys.KeyRing.of_home(tmp_path / "home")
    assert not ring.folder.exists()
    first = ring.current()[1]
    assert ring.current()[1] == first  # created once
    assert stat.S_IMODE(ring.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((ring.folder / keys.PUBLIC).stat().st_mode) == 0o700
    for path in (ring.folder / keys.SIGNING, ring.folder / keys.PUBLIC / f"{first.id}.pub"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert [k.id for k in ring.known()] == [first.id]
    os.chmod(ring.folder / keys.SIGNING, 0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        ring.current()


def test_trust_key_reads_hex_a_file_or_pem(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key, public = keys.KeyRing(tmp_path / "k").current()
    assert keys.trusted_key(public.hex) == public
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "k.pem").write_bytes(pem)
    assert keys.trusted_key(str(tmp_path / "k.pem")) == public
    with pytest.raises(ValidationError, match="neither 64 hex digits nor a file"):
        keys.trusted_key("abc")


@pytest.mark.slow
def test_keys_show_rotate_and_import_trust_key_on_the_command_line(
        deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = Cli(deployment, monkeypatch, capsys, tmp_path / "home-a")
    add_org(deployment, "alpha")
    code, out, _ = source("tenant", "keys", "show", "--json")
    assert code == 0
    shown = json.loads(out)
    assert len(shown["current"]["public_key"]) == 64 and shown["retired"] == []
    code, out, _ = source("tenant", "export", "alpha", "--out", str(tmp_path / "a.tar"),
                          "--json")
    assert code == 0 and json.loads(out)["signed_by"] == shown["current"]["id"]
    code, out, _ = source("tenant", "keys", "rotate")
    assert code == 0 and f"replaces {shown['current']['id']}" in out
    code, out, _ = source("tenant", "delete", "alpha", "--yes")
    assert code == 0

    target = Cli(deployment, monkeypatch, capsys, tmp_path / "home-b")
    one_line_error(target("tenant", "import", str(tmp_path / "a.tar")), "does not trust")
    one_line_error(target("tenant", "import", str(tmp_path / "a.tar"), "--max-size", "1k"),
                   "--max-size")
    code, out, err = target("tenant", "import", str(tmp_path / "a.tar"), "--trust-key",
                            shown["current"]["public_key"], "--json")
    assert code == 0, err
    assert json.loads(out)["signed_by"] == shown["current"]["id"]
