"""platformdb.secrets: envelope encryption bound to its tenant and record, keys by id."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platformdb import secrets
from platformdb.errors import ConfigError, ValidationError

OLD = secrets.KeyRing.parse("old:" + secrets.generate_key())
NEW = secrets.KeyRing.parse(
    f"new:{secrets.generate_key()},old:{base64.b64encode(OLD.keys['old']).decode()}")


@settings(max_examples=50, deadline=None)
@given(plain=st.binary(max_size=2048), org=st.uuids(), record=st.uuids())
def test_a_value_decrypts_only_with_its_own_binding(plain: bytes, org: uuid.UUID,
                                                   record: uuid.UUID) -> None:
    sealed = secrets.encrypt(OLD, plain, org_id=org, record_id=record)
    assert sealed.key_id == "old" == secrets.key_id_of(sealed.ciphertext)
    assert sealed.ciphertext.startswith(b"PDBE\x01\x03old")
    assert plain not in sealed.ciphertext[9:] or len(plain) < 8  # never in clear after the header
    assert secrets.decrypt(OLD, sealed.ciphertext, org_id=org, record_id=record) == plain
    other = uuid.uuid4()
    for org_id, record_id, purpose in ((other, record, secrets.DSP_CREDENTIALS),
                                       (org, other, secrets.DSP_CREDENTIALS),
                                       (record, org, secrets.DSP_CREDENTIALS),
                                       (org, record, "users.mfa_secret")):
        if (org_id, record_id, purpose) == (org, record, secrets.DSP_CREDENTIALS):
            continue
        with pytest.raises(ValidationError, match="cannot decrypt"):
            secrets.decrypt(OLD, sealed.ciphertext, org_id=org_id, record_id=record_id,
                            purpose=purpose)


@settings(max_examples=50, deadline=None)
@given(plain=st.binary(min_size=1, max_size=200), data=st.data())
def test_any_changed_byte_is_detected(plain: bytes, data: st.DataObject) -> None:
    org, record = uuid.uuid4(), uuid.uuid4()
    blob = bytearray(secrets.encrypt(OLD, plain, org_id=org, record_id=record).ciphertext)
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises((ValidationError, ConfigError)):
        secrets.decrypt(OLD, bytes(blob), org_id=org, record_id=record)


def test_every_value_gets_its_own_data_key_and_nonce() -> None:
    org, record = uuid.uuid4(), uuid.uuid4()
    blobs = {secrets.encrypt(OLD, b"same", org_id=org, record_id=record).ciphertext
             for _ in range(20)}
    assert len(blobs) == 20


def test_the_active_key_encrypts_and_the_old_ones_still_decrypt() -> None:
    org, record = uuid.uuid4(), uuid.uuid4()
    old = secrets.encrypt(OLD, b"v", org_id=org, record_id=record)
    assert NEW.active_key_id == "new"
    assert secrets.decrypt(NEW, old.ciphertext, org_id=org, record_id=record) == b"v"
    new = secrets.encrypt(NEW, b"v", org_id=org, record_id=record)
    assert new.key_id == "new"
    with pytest.raises(ConfigError, match="'new' is not configured"):
        secrets.decrypt(OLD, new.ciphertext, org_id=org, record_id=record)


@pytest.mark.parametrize(("value", "message"), [
    ("", "holds no key"),
    ("nokey", "is not kid:base64key"),
    ("a:!!!", "not base64"),
    ("a:" + base64.b64encode(b"short").decode(), "is 5 bytes"),
    ("-bad:" + base64.b64encode(bytes(32)).decode(), "must be 1-64 letters"),
    ("a:{k},a:{k}".format(k=base64.b64encode(bytes(32)).decode()), "appears twice"),
])
def test_malformed_key_configuration_is_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        secrets.KeyRing.parse(value)


def test_there_is_no_default_key() -> None:
    with pytest.raises(ConfigError, match="PLATFORMDB_SECRET_KEYS is not set"):
        secrets.KeyRing.from_environment({})
    ring = secrets.KeyRing.from_environment(
        {"PLATFORMDB_SECRET_KEYS": f" k1:{secrets.generate_key()} , k0:{secrets.generate_key()}"})
    assert list(ring.keys) == ["k1", "k0"] and ring.active_key_id == "k1"


@pytest.mark.parametrize("blob", [b"", b"{\"client_secret\": 1}", b"PDBE\x02\x01a" + bytes(100),
                                  b"PDBE\x01\x01a" + bytes(10)])
def test_what_is_not_a_sealed_value_is_refused_as_such(blob: bytes) -> None:
    with pytest.raises(ValidationError):
        secrets.decrypt(OLD, blob, org_id=uuid.uuid4(), record_id=uuid.uuid4())


def test_only_platformdb_secrets_and_archive_keys_import_cryptography() -> None:
    import ast
    from pathlib import Path

    def imports(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        return names

    src = Path(secrets.__file__).parent
    users = sorted(str(p.relative_to(src)) for p in src.rglob("*.py")
                   if "cryptography" in imports(p))
    # envelope encryption of tenants' secrets; Ed25519 signatures of tenant archives
    assert users == ["secrets.py", "tenant/keys.py"]
