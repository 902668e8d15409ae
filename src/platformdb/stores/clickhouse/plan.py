"""``migrate plan`` for ClickHouse: which statements rewrite data, and how much.

ClickHouse DDL takes no lock that queues readers the way PostgreSQL's does;
what hurts a live ClickHouse is work proportional to the data: *mutations*
(``ALTER TABLE ... UPDATE / DELETE``, ``MODIFY COLUMN`` to another type,
``MATERIALIZE ...``, ``MODIFY TTL``), which rewrite every part they touch in
the background, ``OPTIMIZE ... FINAL`` (merges every part), ``POPULATE`` and
``INSERT ... SELECT`` (read a whole source), and drops. Each statement is
classified from its text (comments and quoted text removed) and sized from
``system.parts`` (active parts: rows, bytes on disk, parts).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from platformdb.migrate.planning import BACKFILL, StatementPlan, Target, human_bytes
from platformdb.stores.clickhouse.ddl import Statement, code_only

_NAME = r"(?:`?\w+`?\.)?`?(?P<table>\w+)`?"
_ALTER = re.compile(rf"^\s*ALTER\s+TABLE\s+{_NAME}(?:\s+ON\s+CLUSTER\s+\S+)?\s+(?P<rest>.*)$",
                    re.I | re.S)
_OPTIMIZE = re.compile(rf"^\s*OPTIMIZE\s+TABLE\s+{_NAME}(?P<rest>.*)$", re.I | re.S)
_DROP = re.compile(rf"^\s*(?:DROP|TRUNCATE)\s+(?:TABLE|VIEW|DICTIONARY)?\s*(?:IF\s+EXISTS\s+)?"
                   rf"{_NAME}", re.I)
_DELETE = re.compile(rf"^\s*DELETE\s+FROM\s+{_NAME}", re.I)
_UPDATE = re.compile(rf"^\s*UPDATE\s+{_NAME}\s+SET\b", re.I)
_INSERT_SELECT = re.compile(rf"^\s*INSERT\s+INTO\s+{_NAME}.*?\bSELECT\b.*?\bFROM\s+"
                            r"(?:`?\w+`?\.)?`?(?P<source>\w+)`?", re.I | re.S)
_CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?P<kind>TABLE|VIEW|MATERIALIZED\s+VIEW|"
                     r"DICTIONARY|DATABASE|NAMED\s+COLLECTION|FUNCTION)\b", re.I)
_POPULATE_SOURCE = re.compile(r"\bFROM\s+(?:`?\w+`?\.)?`?(?P<source>\w+)`?", re.I)
_MODIFY_COLUMN = re.compile(r"^MODIFY\s+COLUMN\s+(?:IF\s+EXISTS\s+)?`?\w+`?\s+(?P<what>\S+)",
                            re.I)
_METADATA_WORDS = ("REMOVE", "COMMENT", "DEFAULT", "MATERIALIZED", "ALIAS", "TTL", "SETTING",
                   "RESET")

Sizes = Callable[[str], tuple[int, int, int] | None]
"""table -> (rows, bytes on disk, active parts), or None when it does not exist."""


def _subcommands(rest: str) -> list[str]:
    """The comma-separated actions of an ALTER TABLE (commas inside brackets kept)."""
    parts, depth, current = [], 0, ""
    for ch in rest:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _classify_alter(action: str) -> tuple[str, str]:
    """(kind, words) of one ALTER TABLE action: ``mutation``, ``ttl``, ``destructive``,
    ``metadata``."""
    upper = action.upper()
    words = " ".join(action.split())[:80]
    if re.match(r"^(UPDATE|DELETE)\b", upper):
        return "mutation", words
    if re.match(r"^(MATERIALIZE|CLEAR)\s+(COLUMN|INDEX|PROJECTION|STATISTICS|TTL)", upper):
        return "mutation", words
    if re.match(r"^MODIFY\s+TTL\b", upper):
        return "ttl", words
    column = _MODIFY_COLUMN.match(action)
    if column is not None:
        if column["what"].upper() in _METADATA_WORDS:
            return "metadata", words
        return "mutation", words
    if re.match(r"^(DROP\s+(COLUMN|PARTITION|PART|DETACHED)|DELETE|FREEZE)", upper):
        return "destructive", words
    return "metadata", words


def plan_statement(statement: Statement, sizes: Sizes) -> StatementPlan:
    """What one rendered ClickHouse statement does, sized from ``sizes``."""
    text = code_only(statement.text)
    plan = StatementPlan(statement.line, statement.text.strip(), _first_words(text), "")

    def target(table: str, action: str, **flags: Any) -> Target:
        found = sizes(table)
        rows, size, parts = found if found is not None else (0, 0, 0)
        item = Target(table, flags.pop("lock", "metadata"), action, exists=found is not None,
                      rows=rows, bytes=size, partitions=parts, **flags)
        plan.targets.append(item)
        return item

    alter = _ALTER.match(text)
    if alter is not None:
        for action in _subcommands(alter["rest"]):
            kind, words = _classify_alter(action)
            item = target(alter["table"], words, lock="mutation" if kind in (
                "mutation", "ttl") else "metadata", rewrite=kind in ("mutation", "ttl"),
                destructive=kind == "destructive")
            _judge_alter(plan, item, kind)
        plan.lock = "mutation" if any(t.rewrite for t in plan.targets) else "metadata"
        return plan
    optimize = _OPTIMIZE.match(text)
    if optimize is not None:
        item = target(optimize["table"], "merge every part" if "FINAL" in text.upper() else
                      "merge parts", lock="merge", rewrite=True)
        plan.lock = "merge"
        if item.rows:
            plan.flag("danger", f"OPTIMIZE rewrites {item.relation} ({_size(item)}) now, "
                      "competing with inserts and queries for disk and CPU",
                      "let background merges do it; readers re-aggregate anyway")
        return plan
    for pattern, kind in ((_DELETE, "lightweight delete"), (_UPDATE, "lightweight update")):
        found = pattern.match(text)
        if found is not None:
            item = target(found["table"], kind, lock="mutation", rewrite=True)
            plan.lock = "mutation"
            if item.rows:
                plan.flag("caution", f"{kind} over {item.relation} ({_size(item)}): marks rows "
                          "in every part it matches, applied by merges later",
                          "a narrow WHERE, or drop whole partitions")
            return plan
    drop = _DROP.match(text)
    if drop is not None:
        item = target(drop["table"], "drop" if text.lstrip().upper().startswith("DROP")
                      else "truncate", destructive=True)
        if item.rows:
            plan.flag("caution", f"drops data: {item.relation} ({_size(item)})",
                      "make sure nothing reads it and a backup holds it")
        return plan
    insert = _INSERT_SELECT.match(text)
    if insert is not None:
        source = target(insert["source"], "read by INSERT ... SELECT", lock="read", scan=True)
        target(insert["table"], "insert")
        if source.rows:
            plan.flag("caution", f"reads all of {source.relation} ({_size(source)}) in one "
                      "statement", f"insert in ranges (by partition), like {BACKFILL}")
        return plan
    create = _CREATE.match(text)
    if create is not None:
        plan.lock = "metadata"
        if "POPULATE" in text.upper():
            found = _POPULATE_SOURCE.search(text.split(" AS ", 1)[-1])
            if found is not None:
                source = target(found["source"], "read by POPULATE", lock="read", scan=True)
                plan.flag("danger", f"POPULATE reads all of {source.relation} "
                          f"({_size(source)}) and misses rows inserted while it runs",
                          "create the view without POPULATE, then INSERT ... SELECT the past "
                          "by partition")
        return plan
    return plan


def _judge_alter(plan: StatementPlan, item: Target, kind: str) -> None:
    if not item.rows:
        return
    if kind == "mutation":
        plan.flag("danger", f"a mutation: rewrites the parts of {item.relation} it touches "
                  f"({_size(item)}) in the background; it cannot be rolled back and queues "
                  "behind other mutations",
                  "add a new column (metadata only) and fill new data through the writer; "
                  "for the past, write corrected rows and let readers re-aggregate")
    elif kind == "ttl":
        plan.flag("danger", f"MODIFY TTL recomputes TTL for every part of {item.relation} "
                  f"({_size(item)}) (materialize_ttl_after_modify)",
                  "SETTINGS materialize_ttl_after_modify = 0, then let merges apply it, or "
                  "drop whole partitions")
    elif kind == "destructive":
        plan.flag("caution", f"drops data from {item.relation} ({_size(item)})",
                  "make sure nothing reads it and a backup holds it")


def _first_words(text: str) -> str:
    words = text.split()
    if len(words) >= 2 and words[0].upper() in ("CREATE", "ALTER", "DROP"):
        second = words[1].upper()
        if second == "MATERIALIZED" and len(words) > 2:
            return f"{words[0].upper()} MATERIALIZED VIEW"
        return f"{words[0].upper()} {second}"
    return words[0].upper() if words else ""


def _size(item: Target) -> str:
    return f"{item.rows or 0:,} rows, {human_bytes(item.bytes)} in {item.partitions} parts"


__all__ = ["Sizes", "plan_statement"]
