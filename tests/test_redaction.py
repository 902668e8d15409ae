"""No password in any output: one redaction function over every URL form."""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from platformdb.redaction import MASK, redact, redact_text

# Passwords of every shape a URL can carry once percent-encoded: reserved
# characters (@ : / ? # &), spaces, non-ASCII. Long enough that a stray
# substring match of ordinary URL text is impossible.
passwords = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=8, max_size=40
).filter(lambda p: p.strip() == p and MASK not in p)
simple_passwords = st.text(alphabet=string.ascii_letters + string.digits + "!$%^*()-_+[]~",
                           min_size=8, max_size=40)

URL_FORMS = [
    "postgresql://platform:{p}@127.0.0.1:5432/platform_dev",
    "postgres://platform:{p}@db1:5432,db2:5433/platform_dev?sslmode=require",
    "postgresql://platform@h/db?password={p}",
    "postgresql://h/db?user=u&sslpassword={p}&application_name=x",
    "http://default:{p}@clickhouse:8123/platform",
    "https://ch.example.com:8443/platform?user=default&password={p}",
    "redis://:{p}@127.0.0.1:6379/0",
    "redis://svc-user:{p}@127.0.0.1:6379/0",
    "redis://{p}@127.0.0.1:6379/0",
    "rediss://default:{p}@cache.example.com:6380/1",
    "redis+cluster://user:{p}@10.0.0.1:7000,10.0.0.2:7001",
    "rediss+cluster://:{p}@10.0.0.1:7000",
    "unix://:{p}@/var/run/redis.sock?db=0",
    "unix:///var/run/redis.sock?db=0&password={p}",
    "chdb:///var/lib/ch?password={p}",
]


def assert_hidden(secret: str, text: str) -> None:
    for form in {secret, quote(secret, safe=""), quote(secret, safe="!$'()*+,;=:@")}:
        assert form not in text, (secret, text)


@pytest.mark.parametrize("form", URL_FORMS)
@given(secret=passwords)
@settings(max_examples=40, deadline=None)
def test_every_url_form_hides_its_password(form: str, secret: str) -> None:
    assume(secret not in form)
    url = form.format(p=quote(secret, safe=""))
    redacted = redact(url)
    assert_hidden(secret, redacted)
    assert MASK in redacted
    # what the message needs stays: scheme and the first host
    assert redacted.split("://")[0] == url.split("://")[0]


@pytest.mark.parametrize("form", URL_FORMS)
@given(secret=simple_passwords, before=st.text(max_size=30), after=st.text(max_size=30))
@settings(max_examples=30, deadline=None)
def test_urls_inside_free_text_are_masked(form: str, secret: str, before: str,
                                          after: str) -> None:
    assume(secret not in before + after + form)
    url = form.format(p=quote(secret, safe=""))
    text = f"{before} cannot connect to {url}: connection refused {after}"
    assert_hidden(secret, redact_text(text))


@given(secret=simple_passwords)
def test_unencoded_at_sign_in_a_password_is_still_masked(secret: str) -> None:
    url = f"postgresql://u:{secret}@x@h:5432/db"
    assert_hidden(secret, redact(url))
    assert redact(url).endswith("@h:5432/db")


@given(secret=simple_passwords)
def test_libpq_key_value_strings_are_masked(secret: str) -> None:
    for dsn in (f"host=h port=5432 user=u password={secret} dbname=d",
                f"host=h password='{secret} with space' dbname=d",
                f"PASSWORD = {secret}"):
        assert_hidden(secret, redact(dsn))
        assert_hidden(secret, redact_text(f"error: {dsn}"))


@given(secret=simple_passwords)
def test_json_documents_are_masked(secret: str) -> None:
    document = json.dumps({"target": f"redis://:{secret}@h:6379/0", "password": secret,
                           "nested": {"dsn": f"postgresql://u:{secret}@h/db"}})
    masked = redact_text(document)
    assert_hidden(secret, masked)
    assert json.loads(masked)["target"] == f"redis://:{MASK}@h:6379/0"


def test_only_the_secret_is_replaced() -> None:
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    assert redact("postgresql://platform@h/db") == "postgresql://platform@h/db"
    assert redact("http://h:8123/?user=default&password=x&database=p") == (
        "http://h:8123/?user=default&password=***&database=p")
    assert redact("chdb:///var/lib/ch") == "chdb:///var/lib/ch"
    assert redact_text("status: ok, rows=5, table=auth_tokens") == (
        "status: ok, rows=5, table=auth_tokens")


def test_a_role_named_auth_before_a_colon_stays_readable() -> None:
    # migrate baseline and verify --drift name grants as "... to platform_auth: <detail>"
    line = "grant SELECT on table users to platform_auth: missing (expected SELECT)"
    assert redact_text(line) == line
    assert redact_text("svc_auth: 3 connections") == "svc_auth: 3 connections"
    assert redact_text("auth: hunter22") == f"auth: {MASK}"
    assert redact_text("REDISCLI_AUTH=hunter22") == f"REDISCLI_AUTH={MASK}"
    assert redact_text("platform_auth=hunter22") == f"platform_auth={MASK}"
