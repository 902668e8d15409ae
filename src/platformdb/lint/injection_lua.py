"""Lua scripts that build key names from ARGV (``redis/scripts/**/*.lua``).

A script must receive every key it touches in ``KEYS``: Redis Cluster routes a
script by its keys, and a key assembled from ``ARGV`` lets a caller's input
choose which key (and which tenant's data) the script touches. A key argument
of ``redis.call``/``redis.pcall`` is a finding when it contains ``ARGV`` or a
variable assigned from ``ARGV`` (directly or through other variables).

Keys derived from ``KEYS`` or from data the script read (``index .. ':' ..
member``) are not findings. Which arguments are keys follows the command:
the first argument for most, every argument for ``DEL``/``EXISTS``/``MGET``...,
the first two for ``RENAME``/``LMOVE``/``SMOVE``..., every other one for
``MSET``. The script is tokenised, not executed; assignments are followed in
file order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from platformdb.lint.context import REDIS_SCRIPTS_DIR, Context
from platformdb.lint.findings import Finding

RULE = "lua-key-from-argv"
KEYLESS = frozenset({
    "TIME", "PING", "ECHO", "INFO", "PUBLISH", "DBSIZE", "RANDOMKEY", "SCRIPT", "CLIENT",
    "CONFIG", "FLUSHALL", "FLUSHDB", "LASTSAVE", "ROLE", "COMMAND", "SELECT", "WAIT", "SCAN",
    "FUNCTION", "FCALL", "EVAL", "EVALSHA",
})
ALL_KEYS = frozenset({
    "DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SINTER", "SUNION", "SDIFF",
    "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "PFCOUNT", "PFMERGE",
})
TWO_KEYS = frozenset({
    "RENAME", "RENAMENX", "SMOVE", "LMOVE", "BLMOVE", "RPOPLPUSH", "BRPOPLPUSH", "COPY",
    "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE", "ZRANGESTORE", "GEOSEARCHSTORE",
})
PAIRS = frozenset({"MSET", "MSETNX"})
STATEMENT_WORDS = frozenset({
    "local", "if", "for", "while", "return", "end", "do", "then", "else", "elseif", "until",
    "repeat", "break", "goto", "function",
})
BINARY = frozenset({
    "..", "+", "-", "*", "/", "//", "%", "^", "==", "~=", "<", ">", "<=", ">=", "and", "or",
    ",", "(", "[", "{", "=", "not", "#",
})

_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<longcomment>--\[(?P<lceq>=*)\[.*?\](?P=lceq)\])
  | (?P<comment>--[^\n]*)
  | (?P<longstring>\[(?P<lseq>=*)\[.*?\](?P=lseq)\])
  | (?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<name>[A-Za-z_]\w*)
  | (?P<number>0[xX][0-9a-fA-F.]+(?:[pP][+-]?\d+)?|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|//|::|<<|>>|.)
""", re.S | re.X)


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    line: int


def tokenize(text: str) -> list[Token]:
    """Lua tokens without whitespace and comments, each with its line."""
    tokens: list[Token] = []
    line = 1
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup or "op"
        if kind in ("lceq", "lseq"):
            kind = "longcomment" if match["longcomment"] else "longstring"
        value = match.group(0)
        if kind not in ("space", "comment", "longcomment"):
            tokens.append(Token("string" if kind == "longstring" else kind, value, line))
        line += value.count("\n")
    return tokens


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for path in ctx.files(REDIS_SCRIPTS_DIR, "**/*.lua"):
        findings.extend(check_script(ctx.rel(path), path.read_text(encoding="utf-8")))
    return findings


def check_script(rel: str, text: str) -> list[Finding]:
    tokens = tokenize(text)
    tainted: set[str] = set()
    findings: list[Finding] = []
    i = 0
    while i < len(tokens):
        assigned = _assignment(tokens, i)
        if assigned is not None:
            names, start, end = assigned
            _assign(names, _split_commas(tokens[start:end]), tainted,
                    numeric_for=tokens[i].value == "for" and tokens[start - 1].value == "=")
        if _is_redis_call(tokens, i):
            findings.extend(_check_call(rel, tokens, i + 4, tainted))
        i += 1
    return findings


def _assign(names: list[str], values: list[list[Token]], tainted: set[str],
            numeric_for: bool) -> None:
    """Taint each name by its own value (``a, b = KEYS[1], ARGV[1]`` taints only b).

    A numeric ``for`` counter is a number used as a subscript, never tainted.
    Names past the last value take the last value's taint when it is a call
    (which may return several values).
    """
    for position, name in enumerate(names):
        if numeric_for:
            tainted.discard(name)
            continue
        if position < len(values):
            value = values[position]
        elif values and values[-1] and values[-1][-1].value == ")":
            value = values[-1]
        else:
            value = []
        if _mentions_argv(value, tainted) and not _extends_a_declared_key(value):
            tainted.add(name)
        else:
            tainted.discard(name)


def _extends_a_declared_key(tokens: list[Token]) -> bool:
    """``KEYS[n] .. suffix``: a key named after a declared one.

    It starts with the declared key, so it carries that key's ``{hash tag}``
    and lives in the same cluster slot (the queue's per-job hashes, for one).
    """
    return (len(tokens) > 4 and tokens[0].value == "KEYS" and tokens[1].value == "["
            and tokens[3].value == "]" and tokens[4].value == "..")


def _split_commas(tokens: list[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.value in ("(", "[", "{"):
            depth += 1
        elif token.value in (")", "]", "}"):
            depth -= 1
        elif token.value == "," and depth == 0:
            parts.append([])
            continue
        parts[-1].append(token)
    return parts


def _assignment(tokens: list[Token], i: int) -> tuple[list[str], int, int] | None:
    """``[local] a, b = exprs`` or ``for a, b in exprs`` starting at ``i``."""
    j = i + 1 if tokens[i].value in ("local", "for") else i
    if i > 0 and tokens[i - 1].value in ("local", "for", ".", ":", ","):
        return None
    names: list[str] = []
    while j < len(tokens) and tokens[j].kind == "name" and tokens[j].value not in STATEMENT_WORDS:
        names.append(tokens[j].value)
        j += 1
        if j < len(tokens) and tokens[j].value == "<":  # Lua 5.4 attribs: <const>
            j += 3
        if j < len(tokens) and tokens[j].value == ",":
            j += 1
            continue
        break
    if not names or j >= len(tokens) or tokens[j].value not in ("=", "in"):
        return None
    if tokens[j].value == "in" and tokens[i].value != "for":
        return None
    return names, j + 1, _expression_end(tokens, j + 1)


def _expression_end(tokens: list[Token], start: int) -> int:
    depth = 0
    for k in range(start, len(tokens)):
        value = tokens[k].value
        if value in ("(", "[", "{"):
            depth += 1
        elif value in (")", "]", "}"):
            depth -= 1
            if depth < 0:
                return k
        elif depth == 0 and k > start:
            previous = tokens[k - 1]
            new_line = tokens[k].line > previous.line
            if value in STATEMENT_WORDS or value == ";" or (
                    new_line and previous.value not in BINARY and value not in BINARY
                    and tokens[k].kind == "name"):
                return k
    return len(tokens)


def _mentions_argv(tokens: list[Token], tainted: set[str]) -> bool:
    return bool(_culprits(tokens, tainted))


def _culprits(tokens: list[Token], tainted: set[str]) -> list[str]:
    """ARGV and tainted names in ``tokens``, outside ``[...]`` subscripts.

    ``live[i]`` is a value read from a table; the counter ``i`` chooses an
    element, it is not part of the string. ``ARGV[i]`` still names ARGV.
    """
    found: list[str] = []
    depth = 0
    for token in tokens:
        if token.value == "[":
            depth += 1
        elif token.value == "]":
            depth = max(depth - 1, 0)
        elif depth == 0 and token.kind == "name" and (token.value == "ARGV"
                                                       or token.value in tainted):
            found.append(token.value)
    return found


def _is_redis_call(tokens: list[Token], i: int) -> bool:
    return (i + 3 < len(tokens) and tokens[i].value == "redis" and tokens[i + 1].value == "."
            and tokens[i + 2].value in ("call", "pcall") and tokens[i + 3].value == "(")


def _arguments(tokens: list[Token], start: int) -> list[list[Token]]:
    """The comma-separated arguments of a call whose ``(`` precedes ``start``."""
    arguments: list[list[Token]] = [[]]
    depth = 0
    for token in tokens[start:]:
        if token.value in ("(", "[", "{"):
            depth += 1
        elif token.value in (")", "]", "}"):
            if depth == 0:
                break
            depth -= 1
        elif token.value == "," and depth == 0:
            arguments.append([])
            continue
        arguments[-1].append(token)
    return [a for a in arguments if a]


def _check_call(rel: str, tokens: list[Token], start: int, tainted: set[str]) -> list[Finding]:
    arguments = _arguments(tokens, start)
    if not arguments:
        return []
    head = arguments[0]
    command = head[0].value.strip("'\"").upper() if len(head) == 1 and head[0].kind == "string" \
        else ""
    if command in KEYLESS:
        return []
    rest = arguments[1:]
    if command in ALL_KEYS:
        keys = rest
    elif command in TWO_KEYS:
        keys = rest[:2]
    elif command in PAIRS:
        keys = rest[::2]
    else:
        keys = rest[:1]
    findings: list[Finding] = []
    for key in keys:
        culprits = sorted(set(_culprits(key, tainted)))
        if culprits:
            findings.append(Finding(
                rel, key[0].line, RULE,
                f"redis.call({command or '...'}) uses a key built from {', '.join(culprits)}; "
                "pass every key the script touches in KEYS"))
    return findings
