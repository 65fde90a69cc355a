"""The shipped JSON Schema is valid draft 2020-12 and documents every stage and items field."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from chalicelib.pipeline.schema_issues import load_schema


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_field_has_a_description() -> None:
    schema = load_schema()
    defs = schema["$defs"]
    for owner in ("stage", "items", "resources", "retries", "retryRule"):
        for name, prop in defs[owner]["properties"].items():
            target = defs[prop["$ref"].split("/")[-1]] if "$ref" in prop else prop
            assert target.get("description") or prop.get("description"), f"{owner}.{name} has no description"
