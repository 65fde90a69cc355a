"""maxResults / nextToken pagination over an ordered list, with an opaque token."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

from chalicelib.localbatch.api import validation
from chalicelib.localbatch.errors import ClientException

T = TypeVar("T")


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode(token: Any) -> int:
    try:
        text = base64.urlsafe_b64decode(validation.as_str(token, "nextToken", min_len=1).encode()).decode()
        kind, _, number = text.partition(":")
        if kind != "offset" or not (number.isascii() and number.isdigit()):
            raise ValueError(kind)
        return int(number)
    except (ValueError, UnicodeDecodeError):
        raise ClientException("nextToken: not a token this API returned") from None


def page(items: list[T], body: dict[str, Any], key: str, *, limit: int) -> tuple[list[T], dict[str, str]]:
    """Returns one page and, when more remain, {"nextToken": ...}."""
    size = limit
    if body.get(key) is not None:
        size = validation.as_int(body[key], key, minimum=1, maximum=limit)
    start = _decode(body["nextToken"]) if body.get("nextToken") else 0
    chunk = items[start:start + size]
    if start + size < len(items):
        return chunk, {"nextToken": _encode(start + size)}
    return chunk, {}
