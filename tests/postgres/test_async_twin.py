"""The blocking tenant code is the asyncio code with its names swapped, nothing else.

``src/platformdb/postgres/_tenancy_async.py`` is the source; ``_tenancy.py``
is derived from it by :func:`derive`. After editing the source, regenerate:

    .venv/bin/python -m tests.postgres.test_async_twin
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "platformdb" / "postgres"
SOURCE = PACKAGE / "_tenancy_async.py"
TARGET = PACKAGE / "_tenancy.py"

RENAMES = {
    "AsyncIterator": "Iterator",
    "asynccontextmanager": "contextmanager",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnection": "Connection",
    "async_reset_connection": "reset_connection",
    "create_async_pool": "create_pool",
    "async_shared_pool": "shared_pool",
    "async_close_shared_pools": "close_shared_pools",
    "async_tenant_transaction": "tenant_transaction",
    "async_tenant_connection": "tenant_connection",
    "async_pool_registry": "pool_registry",
}
HEADER = '''"""Tenant-scoped transactions and pools, blocking side.

Generated from ``_tenancy_async.py`` by ``tests/postgres/test_async_twin.py``
(``python -m tests.postgres.test_async_twin``): do not edit; edit the source.
"""
'''


def derive(source: str) -> str:
    body = source[source.index('"""', 3) + 3:]  # drop the source's own docstring
    body = re.sub(r"\b(" + "|".join(sorted(RENAMES, key=len, reverse=True)) + r")\b",
                  lambda m: RENAMES[m.group(1)], body)
    body = re.sub(r"\basync (def|with) ", r"\1 ", body)
    body = re.sub(r"\bawait ", "", body)
    return HEADER + "\n" + body.lstrip("\n")


def test_the_blocking_twin_is_derived_from_the_async_source() -> None:
    assert TARGET.read_text() == derive(SOURCE.read_text()), (
        "_tenancy.py is stale: run .venv/bin/python -m tests.postgres.test_async_twin")


def test_the_async_source_holds_no_blocking_name() -> None:
    derived = derive(SOURCE.read_text())
    assert "async" not in re.sub(r'"""[\s\S]*?"""', "", derived).replace("asyncio", "")


if __name__ == "__main__":
    TARGET.write_text(derive(SOURCE.read_text()))
    print(f"wrote {TARGET}")
