"""JSON in and out of Redis, with errors that say what was wrong."""

from __future__ import annotations

import json
from typing import Any

from platformdb.errors import ValidationError

MAX_VALUE_BYTES = 1 << 20  # 1 MiB: a job payload, cache value or event is not a blob store


def dumps(value: Any, what: str) -> str:
    """``value`` as compact JSON; :class:`ValidationError` when it is not JSON data."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not JSON-serializable: {exc}") from None
    if len(text) > MAX_VALUE_BYTES and len(text.encode()) > MAX_VALUE_BYTES:
        raise ValidationError(f"{what} is larger than {MAX_VALUE_BYTES} bytes as JSON")
    return text


def loads(raw: str | bytes) -> Any:
    return json.loads(raw)


def text(raw: str | bytes) -> str:
    """A reply as ``str`` whether or not the client decodes responses."""
    return raw.decode() if isinstance(raw, bytes) else raw
