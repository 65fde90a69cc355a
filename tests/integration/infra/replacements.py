"""Which resources a stack update would replace: CloudFormation's create-only properties, plus Batch's rule.

CloudFormation replaces a resource when a property its resource schema lists under
``createOnlyProperties`` changes (cfn-lint ships those schemas), and a logical id that
vanishes from a template is deleted (and, if it reappears under another id, created anew).
AWS Batch adds one rule of its own: a managed compute environment whose
``ReplaceComputeEnvironment`` is true (the default) is replaced when anything but its vCPU
counts, its state or its service role changes.

Values are compared as they stand in the templates; a replaced resource's new physical id
reaching others through Ref/GetAtt is not followed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

# Must never be replaced by an update: replacing them loses data or running instances.
PROTECTED_TYPES = frozenset({
    "AWS::Batch::ComputeEnvironment", "AWS::Batch::JobQueue", "AWS::S3::Bucket", "AWS::DynamoDB::Table",
    "AWS::Events::EventBus",
})
_BATCH_CE = "AWS::Batch::ComputeEnvironment"
# What may change on a compute environment with ReplaceComputeEnvironment true.
_CE_UPDATABLE = {("State",), ("ServiceRole",), ("ReplaceComputeEnvironment",), ("UpdatePolicy",),
                 ("ComputeResources", "MinvCpus"), ("ComputeResources", "MaxvCpus"),
                 ("ComputeResources", "DesiredvCpus")}
_MISSING = object()


@dataclass(frozen=True)
class Replacement:
    stack: str
    logical_id: str
    type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.stack}/{self.logical_id} ({self.type}): {self.reason}"


@cache
def create_only_paths(resource_type: str, region: str = "us-east-1") -> tuple[tuple[str, ...], ...]:
    """The schema's ``createOnlyProperties`` as property paths (``/properties/A/B`` -> ``("A", "B")``)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    if resource_type.startswith("Custom::") or resource_type.startswith("AWS::Serverless::"):
        return ()
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    return tuple(tuple(p.split("/")[2:]) for p in schema.get("createOnlyProperties", []))


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(value, list):
            # A path through a list (e.g. Ec2Configuration/*/ImageType): compare the lists' projections.
            return [_at(v, (key,)) for v in value]
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping) and value and not any(k.startswith("Fn::") or k == "Ref" for k in value):
        for key, inner in value.items():
            yield from _leaves(inner, (*prefix, key))
    else:
        yield prefix, value


def _batch_rule(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    if str(new.get("ReplaceComputeEnvironment", True)).lower() == "false":
        return []
    changed = []
    old_leaves, new_leaves = dict(_leaves(old)), dict(_leaves(new))
    for path in set(old_leaves) | set(new_leaves):
        if path in _CE_UPDATABLE or old_leaves.get(path, _MISSING) == new_leaves.get(path, _MISSING):
            continue
        changed.append("/".join(path))
    return [f"ReplaceComputeEnvironment is true and {', '.join(sorted(changed))} changed"] if changed else []


def _reasons(resource_type: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    reasons = [
        f"create-only {'/'.join(path)} changed"
        for path in create_only_paths(resource_type)
        if _at(old, path) != _at(new, path)
    ]
    if resource_type == _BATCH_CE:
        reasons += _batch_rule(old, new)
    return reasons


def replacements(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[Replacement]:
    """What updating each stack from template ``old[stack]`` to ``new[stack]`` replaces."""
    found: list[Replacement] = []
    for stack, old_template in old.items():
        new_resources = new.get(stack, {}).get("Resources", {})
        for logical, resource in old_template.get("Resources", {}).items():
            kind = resource["Type"]
            after = new_resources.get(logical)
            if after is None:
                found.append(Replacement(stack, logical, kind, "logical id vanished"))
            elif after["Type"] != kind:
                found.append(Replacement(stack, logical, kind, f"type changed to {after['Type']}"))
            else:
                props_old, props_new = resource.get("Properties", {}), after.get("Properties", {})
                found += [Replacement(stack, logical, kind, r) for r in _reasons(kind, props_old, props_new)]
    return found


def protected(found: list[Replacement]) -> list[Replacement]:
    return [r for r in found if r.type in PROTECTED_TYPES]
