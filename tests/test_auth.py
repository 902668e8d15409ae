"""platformdb.auth: the password rules, bcrypt hashing and verification, rehash, token hashes."""

from __future__ import annotations

import hashlib
import re

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platformdb import auth
from platformdb.errors import ValidationError

FAST = auth.MIN_COST  # tests hash at the lowest accepted cost


def kinds(password: str) -> int:
    return len({"lower" if c.islower() else "upper" if c.isupper() else
                "digit" if c.isdigit() else "other" for c in password})


@settings(max_examples=300, deadline=None)
@given(password=st.text(max_size=40))
def test_each_broken_rule_is_named_and_only_those(password: str) -> None:
    expected = set()
    if len(password) < 8:
        expected.add("min-length")
    if len(password.encode()) > 72:
        expected.add("max-bytes")
    if kinds(password) < 3:
        expected.add("complexity")
    assert {p.split(":")[0] for p in auth.password_problems(password)} == expected
    if expected:
        with pytest.raises(ValidationError) as info:
            auth.validate_password(password)
        assert all(rule in str(info.value) for rule in expected)
    else:
        auth.validate_password(password)


@pytest.mark.parametrize(("password", "rule"), [
    ("Ab1!", "min-length"), ("abcdefgh", "complexity"), ("abcdefg1", "complexity"),
    ("Aa1" + "é" * 40, "max-bytes"),
])
def test_a_refused_password_says_which_rule(password: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=f"password refused: .*{rule}"):
        auth.hash_password(password, cost=FAST)


@settings(max_examples=5, deadline=None)
@given(password=st.text(min_size=8, max_size=20).filter(lambda p: not auth.password_problems(p)))
@pytest.mark.slow
def test_a_hash_verifies_its_password_and_nothing_else(password: str) -> None:
    hashed = auth.hash_password(password, cost=FAST)
    assert re.match(r"^\$2b\$10\$[./A-Za-z0-9]{53}$", hashed)
    assert auth.verify_password(password, hashed)
    assert not auth.verify_password(password + "x", hashed)
    assert not auth.verify_password(password, None, cost=FAST)
    assert not auth.verify_password(password, "not-a-hash", cost=FAST)


def test_the_default_cost_is_12_and_below_10_is_refused() -> None:
    assert auth.DEFAULT_COST == 12
    assert auth.hash_password("Correct#Horse1").startswith("$2b$12$")
    with pytest.raises(ValidationError, match="between 10 and 31"):
        auth.hash_password("Correct#Horse1", cost=9)


@pytest.mark.parametrize(("stored", "cost", "expected"), [
    ("$2b$10$" + "a" * 53, 12, True), ("$2b$12$" + "a" * 53, 12, False),
    ("$2b$13$" + "a" * 53, 12, False), ("$2a$12$" + "a" * 53, 12, True),
    ("$2b$12$" + "a" * 53, 14, True), ("plain", 12, True),
])
def test_needs_rehash_when_the_stored_hash_is_weaker(stored: str, cost: int,
                                                    expected: bool) -> None:
    assert auth.needs_rehash(stored, cost=cost) is expected


def test_verifying_an_over_long_password_is_false_not_an_error() -> None:
    hashed = bcrypt.hashpw(b"Aa1!" * 18, bcrypt.gensalt(rounds=FAST)).decode()
    assert not auth.verify_password("Aa1!" * 19, hashed)


@settings(max_examples=50, deadline=None)
@given(token=st.text(min_size=1, max_size=80))
def test_a_token_is_stored_as_its_hex_sha256(token: str) -> None:
    digest = auth.hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
