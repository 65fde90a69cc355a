"""Hypothesis strategies for hostile Batch requests, built from the service model botocore ships.

Every operation and every member of its input shape gets values of the model's type most of the
time (so requests get past the first check and reach deeper validation) and, otherwise, hostile
ones: the wrong type, out-of-range and non-finite numbers, huge strings, lone surrogates, deep
nesting. Whole bodies are sometimes truncated or made non-UTF-8. Names of resources the fuzz
owns are mixed in, so lookups succeed often enough to reach what lies behind them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import botocore.session
from hypothesis import strategies as st

MODEL = botocore.session.get_session().get_service_model("batch")
OPERATION_NAMES = sorted(MODEL.operation_names)
# Examples per operation: a quick pass in `make test`; `make soak` raises it.
EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "20"))
MAX_DEPTH = 6

# Names the fuzz creates up front: lookups by these reach the checks behind them. The defaults
# (`default`, `local`) are left out, so no fuzz case can disable what the health check runs on.
KNOWN: dict[str, list[str]] = {
    "jobQueue": ["fuzzq", "arn:aws:batch:us-east-1:000000000000:job-queue/fuzzq"],
    "computeEnvironment": ["fuzzce", "arn:aws:batch:us-east-1:000000000000:compute-environment/fuzzce"],
    "jobDefinition": ["fuzzjd", "fuzzjd:1", "arn:aws:batch:us-east-1:000000000000:job-definition/fuzzjd:1"],
    "resourceArn": ["arn:aws:batch:us-east-1:000000000000:job-queue/fuzzq",
                    "arn:aws:batch:us-east-1:000000000000:job-definition/fuzzjd:1"],
}


@dataclass(frozen=True)
class NonFinite:
    """A number JSON has no literal for; rendered as NaN/Infinity/1e999 text in the body."""

    text: str


def hostile_leaf() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**400, -1, 0]),
        st.sampled_from([NonFinite("NaN"), NonFinite("Infinity"), NonFinite("-Infinity"), NonFinite("1e999"),
                         NonFinite("-1e999")]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["\ud800", "a\udfffb", "\u00b2", "\u0663", "x" * 70_000, "", " ", "\x00", "../..", "*"]),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        st.integers(min_value=33, max_value=200).map(lambda depth: nested(depth)),
    )


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


def _string(shape: Any, name: str) -> st.SearchStrategy[Any]:
    if shape.enum:
        return st.sampled_from(list(shape.enum))
    choices = [st.text(min_size=1, max_size=min(int(shape.metadata.get("max", 40)), 40))]
    for key, values in KNOWN.items():
        if name.lower().endswith(key.lower()) or name == key:
            choices.append(st.sampled_from(values))
    if name in ("command",):
        choices.append(st.just("true"))
    return st.one_of(*choices)


def typed(shape: Any, name: str, depth: int) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if depth > MAX_DEPTH:
        return st.none()
    if kind == "structure":
        members = {key: member_value(member, key, depth + 1) for key, member in shape.members.items()
                   if member.serialization.get("location") is None or name == ""}
        required = set(shape.required_members)
        return st.fixed_dictionaries({k: v for k, v in members.items() if k in required},
                                     optional={k: v for k, v in members.items() if k not in required})
    if kind == "list":
        return st.lists(member_value(shape.member, name, depth + 1), max_size=4)
    if kind == "map":
        return st.dictionaries(typed(shape.key, name, depth + 1), member_value(shape.value, name, depth + 1),
                               max_size=4)
    if kind == "string":
        return _string(shape, name)
    if kind in ("integer", "long"):
        return st.integers(min_value=-5, max_value=100_000)
    if kind in ("float", "double"):
        return st.floats(min_value=-5, max_value=1e6)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.integers(min_value=0, max_value=2**40)
    return st.text(max_size=10)  # blob and anything newer


def member_value(shape: Any, name: str, depth: int) -> st.SearchStrategy[Any]:
    good = typed(shape, name, depth)
    return st.one_of(good, good, good, hostile_leaf())  # mostly well-typed, so deeper checks are reached


def encode(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, NonFinite):
            return f"@@{obj.text}@@"
        raise TypeError(obj)
    text = json.dumps(value, default=default)
    for token in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999"):
        text = text.replace(f'"@@{token}@@"', token)
    return text.encode()


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes


def _route(operation: str, body: Any) -> tuple[str, str, Any]:
    http = MODEL.operation_model(operation).http
    path, method = http["requestUri"], http["method"]
    if "{resourceArn}" in path:
        arn = body.pop("resourceArn", "") if isinstance(body, dict) else ""
        # surrogatepass: a lone surrogate travels as the (invalid UTF-8) bytes a hostile client would send
        path = path.replace("{resourceArn}", quote(str(arn), safe="", errors="surrogatepass"))
        keys = body.pop("tagKeys", None) if isinstance(body, dict) else None
        if isinstance(keys, list):
            path += "?" + urlencode([("tagKeys", str(k)) for k in keys], errors="surrogatepass")
    return method, path, body


@st.composite
def requests_for(draw: Any, operation: str) -> Case:
    shape = MODEL.operation_model(operation).input_shape
    body: Any = draw(typed(shape, "", 0)) if shape is not None else {}
    if draw(st.integers(0, 9)) == 0:
        body = draw(hostile_leaf())  # not even an object
    method, path, body = _route(operation, body)
    return Case(method, path, damaged(draw, encode(body)))


def damaged(draw: Any, raw: bytes) -> bytes:
    """The encoded body, or (4 times in 10) that body truncated, broken UTF-8, empty or garbage."""
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "non-utf8", "empty", "garbage"]))
    if damage == "truncate" and len(raw) > 1:
        return raw[: draw(st.integers(1, len(raw) - 1))]
    if damage == "non-utf8":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + b"\xff\xfe\xc3" + raw[at:]
    if damage == "empty":
        return b""
    if damage == "garbage":
        return draw(st.binary(max_size=200))
    return raw
