"""Where the SQL and Lua files are: a checkout's folders or the wheel's copy."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def data_dir(store: str) -> Path:
    """The folder of ``store`` ("postgresql", "clickhouse" or "redis").

    A source checkout (editable install) uses the repository's own folders so
    edits take effect at once; an installed wheel uses its bundled copy.
    """
    checkout = _CHECKOUT_ROOT / store
    if (_CHECKOUT_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return Path(str(resources.files("platformdb") / "_data" / store))


def repo_root() -> Path | None:
    """The checkout's root, or None for an installed wheel."""
    return _CHECKOUT_ROOT if (_CHECKOUT_ROOT / "pyproject.toml").is_file() else None
