"""The small parsers the checks rely on: psql meta-commands, ClickHouse splitting, Lua tokens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from platformdb.lint.ch_syntax import split
from platformdb.lint.injection_lua import check_script, tokenize
from platformdb.lint.sqlfiles import strip_psql


def test_psql_meta_commands_are_blanked_and_variables_substituted() -> None:
    text = (
        "\\set org 'a1'\n"
        "\\set n 3\n"
        "SELECT :'org', :n, :\"org\";\n"
        "SELECT 1 AS x \\gset\n"
        "\\echo :x\n"
        "SELECT now()::date, a[1:m], $$ :n\n"
        "\\n :n $$, ':n', \":n\" -- :n\n"
        "/* :n */ SELECT :n;\n"
    )
    assert strip_psql(text).split("\n") == [
        "",
        "",
        "SELECT 'a1', 3, \"a1\";",
        "SELECT 1 AS x ;",
        "",
        "SELECT now()::date, a[1:m], $$ :n",
        "\\n :n $$, ':n', \":n\" -- :n",
        "/* :n */ SELECT 3;",
        "",
    ]


@given(st.lists(st.sampled_from(["\\set a 1", "SELECT :a;", "\\echo hi", "SELECT 1 \\gset",
                                 "", "-- c", "SELECT $$x$$;"]), max_size=20))
def test_stripping_psql_keeps_every_line_in_place(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert strip_psql(text).count("\n") == text.count("\n")


def test_clickhouse_split_ignores_semicolons_in_strings_and_comments() -> None:
    text = ("-- a; comment\nSELECT 'a;b', \"c;d\", `e;f` /* g; */ FROM t;\n\n"
            "# h;\nSELECT 'it''s; \\' fine';\nSELECT 3")
    assert [(s.line, s.text) for s in split(text)] == [
        (2, "SELECT 'a;b', \"c;d\", `e;f` /* g; */ FROM t"),
        (5, "SELECT 'it''s; \\' fine'"),
        (6, "SELECT 3"),
    ]


def test_lua_tokens_skip_comments_and_strings_and_count_lines() -> None:
    tokens = tokenize("--[[ ARGV\n]] local a = [==[\nARGV ]==] -- ARGV\nreturn 'ARGV'")
    assert [(t.value, t.line) for t in tokens if t.kind == "name"] == [
        ("local", 2), ("a", 2), ("return", 4)]


def test_lua_taint_follows_each_assigned_value() -> None:
    script = ("local index, key, id = KEYS[1], KEYS[2], ARGV[1]\n"
              "redis.call('DEL', key)\n"
              "redis.call('HDEL', index, id)\n"
              "local derived = index .. ':' .. id\n"
              "redis.call('EXISTS', derived)\n"
              "derived = KEYS[3]\n"
              "redis.call('EXISTS', derived)\n"
              "redis.call('RENAME', KEYS[1], 'x:' .. ARGV[2])\n"
              "redis.call('MSET', KEYS[1], ARGV[1], KEYS[2], ARGV[2])\n")
    assert [f.line for f in check_script("s.lua", script)] == [5, 8]
