"""Configuration: environment over .env, URL checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from platformdb.config import load_settings, read_dotenv
from platformdb.errors import ConfigError
from platformdb.redaction import redact


def test_unset_urls_mean_the_embedded_stack(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert settings.postgres_url is None and settings.redis_url is None
    assert settings.home == tmp_path / ".platformdb"


def test_environment_overrides_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# comment\nexport PLATFORMDB_POSTGRES_URL='postgresql://a@h1/db'\n"
        "PLATFORMDB_REDIS_URL=redis://h2:6380/0\nPLATFORMDB_HOME=state\n")
    settings = load_settings({"PLATFORMDB_POSTGRES_URL": "postgresql://b@h3/db"}, cwd=tmp_path)
    assert settings.postgres_url == "postgresql://b@h3/db"
    assert settings.redis_url == "redis://h2:6380/0"
    assert settings.home == tmp_path / "state"


def test_malformed_dotenv_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OK=1\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        read_dotenv(tmp_path / ".env")


@pytest.mark.parametrize(("name", "url", "message"), [
    ("PLATFORMDB_POSTGRES_URL", "mysql://h/db", "must start with one of"),
    ("PLATFORMDB_POSTGRES_URL", "postgresql://h:abc/db", "not a valid URL"),
    ("PLATFORMDB_REDIS_URL", "redis://", "has no host"),
    ("PLATFORMDB_CLICKHOUSE_URL", "tcp://h:9000", "must start with one of"),
])
def test_bad_urls_are_refused_before_connecting(tmp_path: Path, name: str, url: str,
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({name: url}, cwd=tmp_path)


def test_a_printed_url_hides_only_the_password() -> None:
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize(("name", "url"), [
    ("PLATFORMDB_REDIS_URL", "redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001"),
    ("PLATFORMDB_REDIS_URL", "rediss+cluster://:p@n1:7000,n2:7000,n3:7000"),
    ("PLATFORMDB_POSTGRES_URL",
     "postgresql://u:p@db1:5432,db2:5433/platform?target_session_attrs=read-write"),
])
def test_multi_host_urls_are_accepted(tmp_path: Path, name: str, url: str) -> None:
    settings = load_settings({name: url}, cwd=tmp_path)
    assert url in (settings.redis_url, settings.postgres_url)


def test_a_bad_port_in_a_multi_host_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid URL"):
        load_settings({"PLATFORMDB_REDIS_URL": "redis+cluster://n1:7000,n2:seven"}, cwd=tmp_path)
