"""One redaction function for everything platformdb prints: no password in any output.

:func:`redact` masks the secrets of one connection string, in every form the
platform's stores accept:

- URL userinfo: ``postgresql://user:PASS@host``, ``redis://:PASS@host``,
  ``redis://PASS@host`` (redis-py reads a lone userinfo word as a password in
  some clients, so for Redis schemes it is masked whole), multi-host
  ``postgresql://u:PASS@h1,h2/db`` and ``redis+cluster://u:PASS@h1:1,h2:2``;
- query parameters that carry a secret (``?password=``, ``sslpassword``,
  ``secret``, ``token``, ``api_key``...), percent-encoded or not;
- libpq key/value strings: ``host=h password=PASS`` and ``password='a b'``.

:func:`redact_text` applies the same masking to every connection string and
``password=...`` pair found inside free text (error messages, JSON, logs).
Only the secret is replaced; scheme, user, hosts, ports and database stay
readable so the message still says where things went wrong.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# Parameter names whose value is a secret, wherever they appear (query
# strings, libpq key/value strings, free text).
_SECRET_NAME = (r"(?:[A-Za-z0-9_.-]*(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key"  # noqa: S105 a pattern
                r"|access[_-]?key|private[_-]?key|credentials?|auth))")
_SECRET_KEY = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)
_REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix", "valkey",
                  "valkeys")

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^\s'\"<>`]*)")
_JSON_PAIR = re.compile(
    rf'"(?P<key>{_SECRET_NAME})"(?P<sep>\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_NAMED_AUTH = re.compile(r"[A-Za-z0-9][_.-]auth$", re.IGNORECASE)
"""A name that ends in ``_auth`` (``platform_auth``, ``svc_auth``): a role, not a key."""
_KEYVALUE = re.compile(
    rf"(?P<key>\b{_SECRET_NAME})(?P<sep>\s*[=:]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)",
    re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` (a connection URL or a libpq key/value string) with its secrets masked."""
    match = _URL.fullmatch(url.strip())
    if match is None:
        return _mask_pairs(url)
    return _redact_url(match["scheme"], match["rest"])


def redact_text(text: str) -> str:
    """``text`` with every connection URL and ``password=...``-style pair masked."""
    def url(match: re.Match[str]) -> str:
        return _redact_url(match["scheme"], match["rest"])

    masked = _URL.sub(url, text)
    masked = _JSON_PAIR.sub(lambda m: f'"{m["key"]}"{m["sep"]}"{MASK}"', masked)
    return _mask_pairs(masked, skip_urls=True)


def _redact_url(scheme: str, rest: str) -> str:
    # The authority ends at the first '/', '?' or '#'; an unencoded '@' inside a
    # password is common enough that the LAST '@' before the path decides.
    cut = len(rest)
    for stop in "?#":
        index = rest.find(stop)
        if index >= 0:
            cut = min(cut, index)
    head, tail = rest[:cut], rest[cut:]
    at = head.rfind("@")
    if at >= 0:
        userinfo, hosts = head[:at], head[at + 1:]
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            userinfo = f"{user}:{MASK}" if user else f":{MASK}"
        elif scheme.lower() in _REDIS_SCHEMES and userinfo:
            userinfo = MASK  # redis://PASSWORD@host: the lone word may be the password
        head = f"{userinfo}@{hosts}"
    return f"{scheme}://{head}{_mask_query(tail)}"


def _mask_query(tail: str) -> str:
    if not tail.startswith("?"):
        return tail
    query, hash_sign, fragment = tail[1:].partition("#")
    parts = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if eq and value and _SECRET_KEY.match(unquote(key)):
            item = f"{key}={MASK}"
        parts.append(item)
    return "?" + "&".join(parts) + hash_sign + fragment


def _mask_pairs(text: str, skip_urls: bool = False) -> str:
    """Mask ``password=value`` pairs (libpq strings, free text), leaving URLs to _redact_url."""
    spans = [m.span() for m in _URL.finditer(text)] if skip_urls else []

    def replace(match: re.Match[str]) -> str:
        if any(start <= match.start() < end for start, end in spans):
            return match.group(0)
        if match["value"] == MASK:
            return match.group(0)
        if match["sep"].strip() == ":" and _NAMED_AUTH.search(match["key"]):
            # "... to platform_auth: missing": a role or login named after what it does,
            # followed by prose, not a secret after its key (those are key=value)
            return match.group(0)
        return f"{match['key']}{match['sep']}{MASK}"

    return _KEYVALUE.sub(replace, text)
