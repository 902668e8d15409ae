"""Migration file discovery: names, numbering, directives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platformdb.errors import MigrationError
from platformdb.migrate.files import UP_RE, discover, next_file_names, parse_directives


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_discovers_in_order_with_down_files(tmp_path: Path) -> None:
    folder = write(tmp_path, {
        "002_b.sql": "-- b\nSELECT 2;", "001_a.sql": "-- a\nSELECT 1;",
        "001_a.down.sql": "SELECT 0;", "README.md": "not sql",
    })
    found = discover(folder)
    assert [m.label for m in found] == ["001_a", "002_b"]
    assert found[0].down_path == folder / "001_a.down.sql"
    assert found[1].down_path is None
    assert found[0].transactional


def test_gap_in_numbers_is_refused(tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_a.sql": "SELECT 1;", "003_c.sql": "SELECT 3;"})
    with pytest.raises(MigrationError, match="gap in migration numbers: expected 002"):
        discover(folder)


def test_duplicate_number_is_refused(tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_a.sql": "SELECT 1;", "001_b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="share number 001"):
        discover(folder)


@pytest.mark.parametrize("name", ["1_short.sql", "001-dash.sql", "001_Upper.sql", "init.sql"])
def test_malformed_name_is_refused(tmp_path: Path, name: str) -> None:
    folder = write(tmp_path, {name: "SELECT 1;"})
    with pytest.raises(MigrationError, match="not a migration name"):
        discover(folder)


def test_down_without_up_is_refused(tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_a.sql": "SELECT 1;", "001_other.down.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="down file without a matching up file"):
        discover(folder)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_a.sql": "  \n"})
    with pytest.raises(MigrationError, match="empty"):
        discover(folder)


def test_directives_are_read_from_the_header(tmp_path: Path) -> None:
    text = "-- why\n-- platformdb: no-transaction\n-- platformdb: no-down data backfill\nSELECT 1;"
    assert parse_directives(text, tmp_path / "x.sql") == {
        "no-transaction": "", "no-down": "data backfill"}
    assert parse_directives("SELECT 1;\n-- platformdb: no-transaction", tmp_path / "x") == {}


def test_unknown_directive_and_reasonless_no_down_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="unknown directive"):
        parse_directives("-- platformdb: sometimes\n", tmp_path / "x.sql")
    with pytest.raises(MigrationError, match="needs a reason"):
        parse_directives("-- platformdb: no-down\n", tmp_path / "x.sql")


def test_next_file_names_takes_the_next_number(tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_a.sql": "SELECT 1;"})
    up, down = next_file_names(folder, "Add Reports table")
    assert up.name == "002_add_reports_table.sql"
    assert down.name == "002_add_reports_table.down.sql"


@given(st.integers(min_value=0, max_value=10**6),
       st.from_regex(r"[a-z0-9][a-z0-9_]{0,30}", fullmatch=True))
def test_names_round_trip_through_the_pattern(version: int, name: str) -> None:
    match = UP_RE.match(f"{version:03d}_{name}.sql")
    assert match is not None
    assert int(match["version"]) == version
    assert match["name"] == name


@given(st.text(min_size=1, max_size=40))
def test_arbitrary_names_never_crash_the_pattern(name: str) -> None:
    match = UP_RE.match(name)
    if match is not None:
        assert name.endswith(".sql") and name[:3].isdigit()
