"""Per-service ACL users from ``redis/scripts/acl_users.redis``.

The file holds one ``ACL SETUSER`` line per service with ``${PREFIX}``,
``${SUFFIX}`` and ``${PASSWORD_<ROLE>}`` placeholders; this module fills them
in and applies the lines (on every node of a Cluster).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from redis.exceptions import RedisError

from platformdb.errors import ConfigError, PlatformDBError
from platformdb.redis.client import SyncClient, is_cluster
from platformdb.redis.functions import scripts_dir
from platformdb.redis.keys import check_prefix

_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
_SUFFIX = re.compile(r"[A-Za-z0-9._-]{0,32}")


def acl_file() -> Path:
    return scripts_dir() / "acl_users.redis"


def roles(path: Path | None = None) -> list[str]:
    """The roles whose passwords the file asks for (``RATELIMIT``, ``SESSIONS``...)."""
    text = (path or acl_file()).read_text(encoding="utf-8")
    found = _PLACEHOLDER.findall(text)
    return sorted({n.removeprefix("PASSWORD_") for n in found if n.startswith("PASSWORD_")})


def acl_commands(
    passwords: Mapping[str, str],
    *,
    prefix: str = "",
    user_suffix: str = "",
    path: Path | None = None,
) -> list[list[str]]:
    """The file's ``ACL SETUSER`` lines, placeholders filled, as argument lists.

    ``passwords`` maps a role (``"RATELIMIT"``) to its password; a role
    without one is an error, never an empty password.
    """
    check_prefix(prefix)
    if not _SUFFIX.fullmatch(user_suffix):
        raise ConfigError(f"invalid ACL user suffix {user_suffix!r}: use A-Z a-z 0-9 . _ -")
    values = {"PREFIX": prefix, "SUFFIX": user_suffix}
    for role, password in passwords.items():
        if not password or any(ch.isspace() for ch in password):
            raise ConfigError(f"the password of ACL role {role} must be non-empty, no spaces")
        values[f"PASSWORD_{role.upper()}"] = password

    def fill(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise ConfigError(f"no value for ${{{match.group(1)}}} in the ACL file") from None

    commands = []
    for raw in (path or acl_file()).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = [_PLACEHOLDER.sub(fill, word) for word in shlex.split(line)]
        if words[:2] != ["ACL", "SETUSER"] or len(words) < 3:
            raise ConfigError(f"unexpected line in the ACL file: {line[:60]}")
        commands.append(words)
    return commands


def apply_acl_users(
    client: SyncClient,
    passwords: Mapping[str, str],
    *,
    prefix: str = "",
    user_suffix: str = "",
    path: Path | None = None,
) -> list[str]:
    """Create or reset every service user on the server(s); their names."""
    names = []
    for words in acl_commands(passwords, prefix=prefix, user_suffix=user_suffix, path=path):
        try:
            if is_cluster(client):
                client.execute_command(*words, target_nodes="all")  # type: ignore[no-untyped-call]
            else:
                client.execute_command(*words)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            raise PlatformDBError(f"ACL SETUSER {words[2]} failed: {exc}") from exc
        names.append(words[2])
    return names
