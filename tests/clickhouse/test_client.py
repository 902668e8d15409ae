"""One client factory: clickhouse-connect's Client, errors on one line, a light import."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client
from clickhouse_connect.driver import exceptions as cc_errors

from platformdb.clickhouse import ClickHouseError, command, connect, rows
from platformdb.errors import ConfigError, StoreUnavailable

REPO = Path(__file__).resolve().parents[2]


def test_connect_yields_clickhouse_connects_own_client(ch_empty: Client) -> None:
    assert isinstance(ch_empty, Client)
    assert rows(ch_empty, "SELECT {u:UUID}, {s:String}",
                {"u": "00000000-0000-0000-0000-00000000000a", "s": "it's\n\\ fine"})[0][1] == \
        "it's\n\\ fine"
    assert rows(ch_empty, "SELECT currentDatabase()") == [(ch_empty.database,)]


def test_errors_are_one_line_with_the_engine_message_and_code(ch_url: str) -> None:
    with pytest.raises(ClickHouseError) as raised, connect(ch_url) as client:
        client.command("SELEC 1")
    error = raised.value
    assert "\n" not in str(error) and str(error).startswith("Syntax error")
    assert error.code == 62 and error.name == "SYNTAX_ERROR"
    assert isinstance(error.__cause__, cc_errors.DatabaseError)  # the driver's, chained
    with connect(ch_url) as client, pytest.raises(ClickHouseError, match="UNKNOWN_TABLE"):
        command(client, "SELECT * FROM no_such_table")


def test_a_refused_server_is_store_unavailable_with_its_cause_and_no_password() -> None:
    with pytest.raises(StoreUnavailable) as raised, connect(
            "http://default:s3cret@127.0.0.1:1/platform"):
        pass
    message = str(raised.value)
    assert "Connection refused" in message and "s3cret" not in message and "\n" not in message


def test_unsupported_urls_and_names_are_configuration_errors() -> None:
    for url in ("mysql://x/y", "chdb://relative/path", "chdb:///tmp/x?database=no-dashes"):
        with pytest.raises(ConfigError), connect(url):
            pass


def test_a_process_has_one_chdb_path_open_at_a_time(ch_empty: Client, tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="one chDB path open at a time"), connect(
            f"chdb://{tmp_path / 'other'}"):
        pass


def test_the_chdb_folder_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "clickhouse"
    folder.mkdir(mode=0o755)
    with connect(f"chdb://{folder}") as client:
        client.command("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_client_and_the_writers_row_path_import_nothing_heavy() -> None:
    """A service installs clickhouse-connect, not chdb, pyarrow, numpy or pandas."""
    code = (
        "import sys, datetime as dt, uuid\n"
        "import platformdb.clickhouse, platformdb.clickhouse.writer as w\n"
        "import platformdb.clickhouse.reports, platformdb.stores.clickhouse.ddl\n"
        "rows = [{'timestamp': dt.datetime(2026, 1, 1), 'org_id': uuid.UUID(int=1),\n"
        "         'campaign_id': uuid.UUID(int=2), 'dsp_type': 'dv360', 'impressions': 1,\n"
        "         'clicks': 0, 'conversions': 0, 'spend': '1.25', 'revenue': '0'}]\n"
        "w._columns(w.RAW, rows, 0)\n"
        "print(sorted(m for m in ('chdb', 'pyarrow', 'numpy', 'pandas') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ}, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
