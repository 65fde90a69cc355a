"""JSON Schema check of a spec document, turning jsonschema errors into short SpecIssues.

jsonschema's own messages repeat the offending value, which for an object is
the whole sub-document; these messages show a short repr only.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from chalicelib.pipeline.errors import SpecIssue

SCHEMA_FILE = "pipeline.schema.json"
_REPR_LIMIT = 40


def load_schema() -> dict[str, Any]:
    """The pipeline JSON Schema shipped in the package."""
    text = resources.files("chalicelib.pipeline").joinpath(SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def short_repr(value: Any) -> str:
    """A repr of at most ~40 characters: enough to recognise a value, never a document."""
    if isinstance(value, dict):
        return "an object" if value else "{}"
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "[]"
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def check_schema(document: Any) -> list[SpecIssue]:
    """Every schema violation of ``document``, one SpecIssue each."""
    issues: list[SpecIssue] = []
    for error in _validator().iter_errors(document):
        issues.extend(_to_issues(error))
    return issues


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _to_issues(error: ValidationError) -> list[SpecIssue]:
    path = error.json_path
    rule = str(error.validator)
    value = error.validator_value
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if rule == "required":
        missing = [name for name in value if isinstance(instance, dict) and name not in instance]
        return [SpecIssue(f"{path}.{name}", rule, "required property is missing") for name in missing]
    if rule == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in instance if k not in schema.get("properties", {})]
        return [
            SpecIssue(
                f"{path}.{name}",
                rule,
                f"unknown property {name!r} (expected one of: {', '.join(allowed)})",
            )
            for name in extras
        ]
    if "propertyNames" in error.schema_path:
        return [SpecIssue(f"{path}.{instance}", "propertyNames", _name_message(instance, schema))]
    return [SpecIssue(path, rule, _message(rule, value, instance, schema))]


def _name_message(name: Any, schema: dict[str, Any]) -> str:
    if isinstance(name, str) and name.startswith("AWS_BATCH"):
        return f"{short_repr(name)}: names starting with AWS_BATCH are reserved by Batch"
    return f"{short_repr(name)} is not a valid name (expected letters, digits and '_')"


def _message(rule: str, value: Any, instance: Any, schema: dict[str, Any]) -> str:
    got = short_repr(instance)
    if rule == "type":
        expected = " or ".join(value) if isinstance(value, list) else value
        shown = "" if isinstance(instance, (dict, list)) else f" {got}"
        return f"expected {expected}, got {_type_name(instance)}{shown}"
    if rule == "enum":
        return f"expected one of: {', '.join(str(v) for v in value)}; got {got}"
    if rule == "const":
        return f"expected {value!r}, got {got}"
    if rule == "pattern":
        hint = _first_sentence(schema.get("description", ""))
        return f"{got} does not match {value!r}" + (f" ({hint})" if hint else "")
    if rule in ("minimum", "exclusiveMinimum"):
        return f"expected a value >= {value}, got {got}"
    if rule in ("maximum", "exclusiveMaximum"):
        return f"expected a value <= {value}, got {got}"
    if rule == "minItems":
        return f"expected at least {value} entr{'y' if value == 1 else 'ies'}, got {_count(instance)}"
    if rule == "maxItems":
        return f"expected at most {value} entries, got {_count(instance)}"
    if rule == "minLength":
        return "expected a non-empty string" if value == 1 else f"expected at least {value} characters"
    if rule == "maxLength":
        return f"expected at most {value} characters, got {len(instance)}"
    if rule == "uniqueItems":
        return "entries must be unique"
    if rule == "minProperties":
        return f"expected at least {value} properties"
    if rule == "not" and isinstance(instance, dict) and {"source", "manifest"} <= set(instance):
        return "give either 'source' or 'manifest', not both"
    return f"{got} is invalid ({rule})"


def _count(instance: Any) -> int:
    return len(instance) if isinstance(instance, (list, dict, str)) else 0


def _first_sentence(text: str) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 120 else ""
