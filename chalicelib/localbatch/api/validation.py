"""Request field checks that raise ClientException naming the field and what was expected."""

from __future__ import annotations

import re
from typing import Any

from chalicelib.localbatch.errors import ClientException

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_MISSING = object()
INT_MAX = 2**31 - 1  # the Batch model's Integer is 32-bit: a bigger number is a typo, not a timeout
MAX_DEPTH = 32  # the deepest Batch request shape is under 10 levels
_SURROGATE = re.compile("[\ud800-\udfff]")


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(field: str, expected: str, value: Any = _MISSING) -> ClientException:
    got = "" if value is _MISSING else f", got {short(value)}"
    return ClientException(f"{field}: expected {expected}{got}")


def require(body: dict[str, Any], key: str, field: str | None = None) -> Any:
    if key not in body or body[key] is None:
        raise ClientException(f"{field or key}: is required")
    return body[key]


def as_dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(field, "an object", value)
    return value


def as_list(value: Any, field: str, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise fail(field, "a list", value)
    if max_items is not None and len(value) > max_items:
        raise ClientException(f"{field}: at most {max_items} entries are allowed, got {len(value)}")
    return value


def as_str(value: Any, field: str, *, max_len: int | None = None, min_len: int = 0,
           pattern: re.Pattern[str] | None = None, expected: str | None = None) -> str:
    if not isinstance(value, str):
        raise fail(field, "a string", value)
    if len(value) < min_len or (max_len is not None and len(value) > max_len):
        size = f"at least {min_len}" if max_len is None else f"{min_len} to {max_len}"
        raise fail(field, f"a string of {size} characters", value)
    if pattern is not None and not pattern.match(value):
        raise fail(field, expected or f"a string matching {pattern.pattern}", value)
    return value


def as_int(value: Any, field: str, *, minimum: int | None = None, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(field, "an integer", value)
    if minimum is not None and value < minimum or value > maximum:
        if minimum is not None and maximum != INT_MAX:
            bounds = f"between {minimum} and {maximum}"
        else:
            bounds = f"at least {minimum}" if minimum is not None and value < minimum else f"at most {maximum}"
        raise fail(field, f"an integer {bounds}", value)
    return value


def clean_text(body: Any, field: str = "request body") -> None:
    """Refuses what no field may hold: lone UTF-16 surrogates (not Unicode; UTF-8 cannot store
    them) in any key or string, and nesting deeper than any Batch shape. Iterative, so a deep
    body cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(body, field, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise ClientException(f"{path}: text holds a lone UTF-16 surrogate, which is not valid Unicode")
            continue
        if depth >= MAX_DEPTH and isinstance(value, (dict, list)):
            raise ClientException(f"{path}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path != "request body" else str(key)
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise ClientException(f"{path}: a key holds a lone UTF-16 surrogate, which is not valid Unicode")
                stack.append((item, name, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def as_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise fail(field, "true or false", value)
    return value


def as_enum(value: Any, field: str, allowed: tuple[str, ...], *, case_insensitive: bool = False) -> str:
    if not isinstance(value, str):
        raise fail(field, f"one of {', '.join(allowed)}", value)
    probe = value.upper() if case_insensitive else value
    if probe not in allowed:
        raise fail(field, f"one of {', '.join(allowed)}", value)
    return probe


def as_str_map(value: Any, field: str, *, max_items: int | None = None,
               key_max: int | None = None, value_max: int | None = None) -> dict[str, str]:
    mapping = as_dict(value, field)
    if max_items is not None and len(mapping) > max_items:
        raise ClientException(f"{field}: at most {max_items} entries are allowed, got {len(mapping)}")
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise fail(f"{field}.{key}", "a string", item)
        if key_max is not None and not 1 <= len(key) <= key_max:
            raise fail(f"{field}", f"keys of 1 to {key_max} characters", key)
        if value_max is not None and len(item) > value_max:
            raise fail(f"{field}.{key}", f"a value of at most {value_max} characters", item)
    return dict(mapping)


def tags(value: Any, field: str = "tags") -> dict[str, str]:
    return as_str_map(value, field, max_items=50, key_max=128, value_max=256)


def unknown_keys(body: dict[str, Any], allowed: set[str], field: str) -> None:
    """Rejects misspelled keys early: boto3 would refuse them client-side too."""
    extra = sorted(set(body) - allowed)
    if extra:
        raise ClientException(f"{field}: unknown field {extra[0]!r}")
