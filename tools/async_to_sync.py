#!/usr/bin/env python3
"""Generate the blocking twin of each asyncio module: the async code is the source.

    python tools/async_to_sync.py            # rewrite every generated module
    python tools/async_to_sync.py --check    # exit 1 when one is stale (CI, tests)
    python tools/async_to_sync.py src/platformdb/redis/sessions_async.py   # only these

The idea is psycopg's (``tools/async_to_sync.py`` there): write the asyncio
code once, derive the blocking code mechanically, and fail CI when the two
differ. This version edits the source's tokens instead of re-printing a syntax
tree, so comments (``# type: ignore`` included), blank lines and layout
survive and the output needs no formatter:

- ``async def`` / ``async with`` / ``async for`` lose ``async``; ``await x``
  becomes ``x``; ``Awaitable[T]`` becomes ``T``;
- names are renamed: ``AsyncFoo`` -> ``Foo``, ``foo_async`` -> ``foo``
  (modules), the dunder and helper names of :data:`NAMES`, and each
  conversion's own names; in code, strings and comments alike;
- the few places where asyncio and threads really differ (events, sleeping,
  background units, signal handlers) are called through a compatibility
  module that holds both spellings side by side (``AEvent``/``Event``,
  ``asleep``/``sleep``...), so they are renames too;
- imports are sorted again and the unused ones (``Awaitable``) dropped, by
  ruff's rules I and F401 (the renames can change their order), and the
  result must compile and mention no ``asyncio``.

Register a module in :data:`CONVERSIONS` (source -> target, extra names).
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import token
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "# Generated from {source} by tools/async_to_sync.py: do not edit.\n"
    "# Change the source and run `python tools/async_to_sync.py`.\n"
)
MARK = "by tools/async_to_sync.py: do not edit."

NAMES: dict[str, str] = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "aclose": "close",
    "StopAsyncIteration": "StopIteration",
    "AsyncClient": "SyncClient",
    "connect_async": "connect",
    # platformdb.redis._acompat: the asyncio spelling -> the threading one
    "AEvent": "Event",
    "AUnit": "Unit",
    "asleep": "sleep",
    "await_flag": "wait_flag",
    "aspawn": "spawn",
    "ajoin": "join",
    "ainstall_signals": "install_signals",
    "no_direct_path": "direct_path",
}
_ASYNC_CLASS = re.compile(r"\bAsync([A-Z]\w*)")
_ASYNC_MODULE = re.compile(r"\b(\w+)_async\b")
_WORD = re.compile(r"\b\w+\b")
_AWAIT_WORD = re.compile(r"\bawait ")
_ASYNC_WORD = re.compile(r"\basync (def|with|for)\b")


@dataclass(frozen=True)
class Conversion:
    """One asyncio module and the blocking module generated from it."""

    source: str
    target: str
    names: dict[str, str] = field(default_factory=dict)


CONVERSIONS: list[Conversion] = [
    Conversion("src/platformdb/redis/_fcall_async.py", "src/platformdb/redis/_fcall.py"),
    Conversion("src/platformdb/redis/sessions_async.py", "src/platformdb/redis/sessions.py"),
    Conversion("src/platformdb/redis/cache_async.py", "src/platformdb/redis/cache.py"),
    Conversion("src/platformdb/redis/ratelimit_async.py", "src/platformdb/redis/ratelimit.py"),
    Conversion("src/platformdb/redis/queue_async.py", "src/platformdb/redis/queue.py"),
    Conversion("src/platformdb/redis/events_async.py", "src/platformdb/redis/events.py"),
    Conversion("src/platformdb/redis/tenant_async.py", "src/platformdb/redis/tenant.py"),
    Conversion("src/platformdb/postgres/_tenancy_async.py", "src/platformdb/postgres/_tenancy.py",
               {"asynccontextmanager": "contextmanager", "AsyncIterator": "Iterator",
                "async_reset_connection": "reset_connection", "create_async_pool": "create_pool",
                "async_shared_pool": "shared_pool",
                "async_close_shared_pools": "close_shared_pools",
                "async_tenant_transaction": "tenant_transaction",
                "async_tenant_connection": "tenant_connection",
                "async_pool_registry": "pool_registry"}),
]


class ConversionError(Exception):
    pass


def rename(word: str, names: dict[str, str]) -> str:
    """The blocking name of ``word`` (unchanged when it has none)."""
    if word in names:
        return names[word]
    if word in NAMES:
        return NAMES[word]
    match = _ASYNC_CLASS.fullmatch(word)
    if match:
        return match.group(1)
    match = _ASYNC_MODULE.fullmatch(word)
    if match:
        return match.group(1)
    return word


def _rename_text(text: str, names: dict[str, str]) -> str:
    """Docstrings and comments: the same renames, and their examples lose ``await``."""
    text = _AWAIT_WORD.sub("", _ASYNC_WORD.sub(r"\1", text))
    return _WORD.sub(lambda m: rename(m.group(0), names), text)


def _offsets(source: str) -> list[int]:
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def convert(source: str, names: dict[str, str], origin: str) -> str:
    """The blocking module for the asyncio module ``source`` (before import sorting)."""
    lines = _offsets(source)
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                tokenize.DEDENT, tokenize.ENDMARKER)]

    def at(position: tuple[int, int]) -> int:
        return lines[position[0] - 1] + position[1]

    edits: list[tuple[int, int, str]] = []
    for i, tok in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        keyword = tok.type == token.NAME and following is not None and (
            tok.string == "await" or (tok.string == "async"
                                      and following.string in ("def", "with", "for")))
        if keyword and following is not None:  # drop the keyword and the space after it
            edits.append((at(tok.start), at(following.start), ""))
        elif tok.type == token.NAME and tok.string == "Awaitable" and following is not None \
                and following.string == "[":
            close = _matching(tokens, i + 1)
            edits.append((at(tok.start), at(following.end), ""))
            edits.append((at(tokens[close].start), at(tokens[close].end), ""))
        elif tok.type == token.NAME:
            new = rename(tok.string, names)
            if new != tok.string:
                edits.append((at(tok.start), at(tok.end), new))
        elif tok.type in (token.STRING, tokenize.COMMENT):
            new = _rename_text(tok.string, names)
            if new != tok.string:
                edits.append((at(tok.start), at(tok.end), new))
    out = source
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]
    out = HEADER.format(source=origin) + out
    try:
        compile(out, origin, "exec")
    except SyntaxError as exc:
        raise ConversionError(f"{origin}: the generated code does not compile: {exc}") from exc
    left = {t.string for t in tokenize.generate_tokens(io.StringIO(out).readline)
            if t.type == token.NAME} & {"asyncio", "async", "await"}
    if left:
        raise ConversionError(f"{origin}: the generated code still uses {sorted(left)}; "
                              "go through platformdb.redis._acompat")
    return out


def _matching(tokens: list[tokenize.TokenInfo], open_index: int) -> int:
    depth = 0
    for k in range(open_index, len(tokens)):
        if tokens[k].string in ("(", "[", "{"):
            depth += 1
        elif tokens[k].string in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return k
    raise ConversionError("unbalanced brackets after Awaitable")


def sort_imports(code: str, target: Path, root: Path = ROOT) -> str:
    """``code`` with its imports sorted and the unused ones dropped, by ruff."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--select", "I,F401", "--fix", "--quiet",
             "--exit-zero", "--stdin-filename", str(target), "-"],
            input=code, capture_output=True, text=True, cwd=root, check=False)
    except OSError as exc:
        raise ConversionError(f"cannot run ruff ({exc}); pip install ruff") from exc
    if result.returncode != 0 or not result.stdout:
        raise ConversionError(f"ruff could not sort the imports of {target}: "
                              f"{result.stderr.strip() or 'no output'}")
    return result.stdout


def generate(conversion: Conversion, root: Path = ROOT) -> str:
    source = (root / conversion.source).read_text(encoding="utf-8")
    code = convert(source, conversion.names, Path(conversion.source).name)
    return sort_imports(code, root / conversion.target, root)


def stray_generated(root: Path, conversions: Iterable[Conversion]) -> list[str]:
    """Files that say they were generated but are not a registered target."""
    known = {c.target for c in conversions}
    found = []
    for path in sorted((root / "src").rglob("*.py")):
        rel = str(path.relative_to(root))
        if rel not in known and MARK in path.read_text(encoding="utf-8")[:300]:
            found.append(rel)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a generated file is stale")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the repository (default: this one)")
    parser.add_argument("sources", nargs="*", type=Path, help="only these source modules")
    opts = parser.parse_args(argv)
    root = opts.root.resolve()
    wanted = {str(p.resolve().relative_to(root)) for p in opts.sources}
    conversions = [c for c in CONVERSIONS if not wanted or c.source in wanted]
    if wanted and len(conversions) != len(wanted):
        unknown = sorted(wanted - {c.source for c in conversions})
        parser.error(f"not registered in CONVERSIONS: {unknown}")
    stale: list[str] = []
    try:
        for conversion in conversions:
            code = generate(conversion, root)
            target = root / conversion.target
            current = target.read_text(encoding="utf-8") if target.exists() else None
            if current == code:
                continue
            stale.append(conversion.target)
            if not opts.check:
                target.write_text(code, encoding="utf-8")
                print(f"generated {conversion.target} from {conversion.source}")
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    strays = stray_generated(root, CONVERSIONS)
    for rel in strays:
        print(f"error: {rel} says it is generated but is not in CONVERSIONS", file=sys.stderr)
    if opts.check and stale:
        for rel in stale:
            print(f"stale: {rel} differs from what its async source generates; "
                  "run `python tools/async_to_sync.py`", file=sys.stderr)
        return 1
    return 1 if strays else 0


if __name__ == "__main__":
    sys.exit(main())
