"""Schema snapshots: one store's schema as ``object -> attribute -> canonical value``.

A snapshot is built from the store's catalogues (never from dump text), so two
schemas compare object by object and a difference names the object and the
attribute that differs: ``policy public.campaigns.campaigns_tenant_isolation:
missing``, ``function public.set_tenant(uuid, uuid): definition differs``,
``table public.users: rls: expected enabled, forced; live enabled``. The same
snapshot serves ``migrate verify --drift`` (live vs what the applied
migrations build in a scratch database), ``migrate baseline`` (an adopted
database vs what migrations 1..N build) and ``health`` (a fingerprint: the
SHA-256 of the snapshot, recorded when the schema was known good).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

Snapshot = dict[str, dict[str, str]]


NOT_FINGERPRINTED = ("database",)
"""Left out of the fingerprint ``health`` compares: the database's own grants belong to the
database, not its schema, and a copy made with ``CREATE DATABASE ... TEMPLATE`` does not
carry them (``migrate verify --drift`` still compares them)."""


def fingerprint(snapshot: Snapshot) -> str:
    """A stable hash of the snapshot (but :data:`NOT_FINGERPRINTED`): equal schemas, equal
    fingerprints."""
    kept = {k: v for k, v in snapshot.items() if k not in NOT_FINGERPRINTED}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Difference:
    """One object whose definition differs between the expected and the live schema."""

    object: str
    change: str
    """``missing`` (expected, not live), ``unexpected`` (live only) or ``changed``."""
    detail: str

    def describe(self) -> str:
        return f"{self.object}: {self.detail}"


@dataclass(frozen=True)
class SchemaState:
    """The fingerprint recorded when the schema was last known to be what the migrations
    build; ``fingerprint`` None means drift was found and not cleared since."""

    fingerprint: str | None
    version: int
    recorded_at: datetime | None
    recorded_by: str
    note: str


RELATIONS = ("table", "view", "materialized view", "dictionary")
PARTS = ("column", "constraint", "policy", "trigger")
"""Objects inside a relation: not listed again when the whole relation is missing or extra."""


def diff(expected: Snapshot, live: Snapshot) -> list[Difference]:
    """Every object that is missing, unexpected or defined differently, sorted."""
    found: list[Difference] = []
    whole = {key.split(" ", 1)[1] for key in set(expected) ^ set(live)
             if key.split(" ", 1)[0] in RELATIONS or key.startswith("materialized view ")}
    whole = {name.removeprefix("view ") for name in whole}
    for key in sorted(set(expected) | set(live)):
        kind, _, name = key.partition(" ")
        if kind in PARTS and name.rpartition(".")[0] in whole:
            continue
        want, have = expected.get(key), live.get(key)
        if have is None:
            found.append(Difference(key, "missing", "missing" + _headline(want)))
        elif want is None:
            found.append(Difference(key, "unexpected", "not made by the migrations"
                                    + _headline(have)))
        elif want != have:
            found.append(Difference(key, "changed", "; ".join(_changes(want, have))))
    return found


def _headline(attributes: dict[str, str] | None) -> str:
    """The attribute that best says what the object is, for a missing or extra object."""
    if not attributes:
        return ""
    for name in ("definition", "type", "using", "engine", "kind"):
        if attributes.get(name):
            return f" ({name}: {_short(attributes[name])})"
    return ""


LISTS = ("grants", "roles", "member of", "options", "settings")
"""Attributes that are ``, ``-separated sets: a difference names the items."""


def _changes(want: dict[str, str], have: dict[str, str]) -> Iterable[str]:
    for name in sorted(set(want) | set(have)):
        a, b = want.get(name, ""), have.get(name, "")
        if a == b:
            continue
        if name in LISTS and "[" not in a + b:
            yield f"{name}: {_set_change(a, b)}"
        elif "\n" in a or "\n" in b:
            yield f"{name} differs ({_first_change(a, b)})"
        else:
            yield f"{name}: expected {_short(a) or '(none)'}, live {_short(b) or '(none)'}"


def _set_change(a: str, b: str) -> str:
    want = {item for item in a.split(", ") if item}
    have = {item for item in b.split(", ") if item}
    parts = []
    if want - have:
        parts.append("live lacks " + ", ".join(sorted(want - have)))
    if have - want:
        parts.append("live adds " + ", ".join(sorted(have - want)))
    return "; ".join(parts) or f"expected {a}, live {b}"


def _first_change(a: str, b: str) -> str:
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        return ("expected " if line.startswith("-") else "live ") + _short(line[1:].strip())
    return "whitespace"


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def merge_groups(rows: Iterable[tuple[str, str, dict[str, str]]]) -> Snapshot:
    """Objects of many partitions that normalise to one key (``..._y*m*``), merged.

    ``rows`` are (key, actual name, attributes). Attributes every member agrees on are
    kept as they are; one they disagree on lists each value with its members, so a
    drift names the partitions that differ.
    """
    grouped: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for key, name, found in rows:
        grouped.setdefault(key, []).append((name, found))
    merged: Snapshot = {}
    for key, members in grouped.items():
        if len(members) == 1:
            merged[key] = members[0][1]
            continue
        attributes: dict[str, str] = {}
        for attribute in sorted({a for _, attrs in members for a in attrs}):
            values: dict[str, list[str]] = {}
            for name, attrs in members:
                values.setdefault(attrs.get(attribute, ""), []).append(name)
            if len(values) == 1:
                attributes[attribute] = next(iter(values))
            else:
                attributes[attribute] = "; ".join(
                    f"{value or '(none)'} [{', '.join(sorted(names))}]"
                    for value, names in sorted(values.items()))
        merged[key] = attributes
    return merged
