"""Validation of the shapes SubmitJob and RegisterJobDefinition share: retries, timeouts, resources."""

from __future__ import annotations

import math
import re
from typing import Any

from chalicelib.localbatch.api import validation
from chalicelib.localbatch.errors import ClientException
from chalicelib.localbatch.model import Resources

_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9.:\s]*\*?$")
_EXIT_CODE = re.compile(r"^[0-9]*\*?$")


def retry_strategy(value: Any, field: str = "retryStrategy") -> dict[str, Any] | None:
    if value is None:
        return None
    body = validation.as_dict(value, field)
    validation.unknown_keys(body, {"attempts", "evaluateOnExit"}, field)
    rules = body.get("evaluateOnExit")
    if "attempts" not in body or body["attempts"] is None:
        if rules:
            raise ClientException(f"{field}.attempts: RetryAttempts must be provided with retry strategy")
        return None
    attempts = validation.as_int(body["attempts"], f"{field}.attempts", minimum=1, maximum=10)
    clean: list[dict[str, str]] = []
    for i, rule in enumerate(validation.as_list(rules or [], f"{field}.evaluateOnExit", max_items=5)):
        path = f"{field}.evaluateOnExit[{i}]"
        rule = validation.as_dict(rule, path)
        validation.unknown_keys(rule, {"action", "onStatusReason", "onReason", "onExitCode"}, path)
        entry = {"action": validation.as_enum(validation.require(rule, "action", f"{path}.action"), f"{path}.action",
                                     ("RETRY", "EXIT"), case_insensitive=True)}
        for key in ("onStatusReason", "onReason", "onExitCode"):
            if rule.get(key) is None:
                continue
            text = validation.as_str(rule[key], f"{path}.{key}", max_len=512)
            check = _EXIT_CODE if key == "onExitCode" else _PATTERN_CHARS
            if not check.match(text):
                what = "digits with an optional trailing *" if key == "onExitCode" else \
                    "letters, digits, '.', ':', spaces and an optional trailing *"
                raise validation.fail(f"{path}.{key}", what, text)
            entry[key] = text
        clean.append(entry)
    return {"attempts": attempts, "evaluateOnExit": clean}


def timeout(value: Any, field: str = "timeout") -> int | None:
    if value is None:
        return None
    body = validation.as_dict(value, field)
    validation.unknown_keys(body, {"attemptDurationSeconds"}, field)
    if body.get("attemptDurationSeconds") is None:
        return None
    return validation.as_int(body["attemptDurationSeconds"], f"{field}.attemptDurationSeconds", minimum=60)


def environment(value: Any, field: str) -> list[dict[str, str]]:
    result = []
    for i, item in enumerate(validation.as_list(value, field)):
        path = f"{field}[{i}]"
        item = validation.as_dict(item, path)
        name = validation.as_str(validation.require(item, "name", f"{path}.name"), f"{path}.name", min_len=1)
        if name.startswith("AWS_BATCH"):
            raise ClientException(f"{path}.name: variables starting with AWS_BATCH are reserved, got {name!r}")
        value_ = item.get("value", "")
        result.append({"name": name, "value": validation.as_str(value_, f"{path}.value")})
    return result


def command(value: Any, field: str) -> list[str]:
    items = validation.as_list(value, field)
    for i, part in enumerate(items):
        if not isinstance(part, str):
            raise validation.fail(f"{field}[{i}]", "a string", part)
        if part == "":
            raise ClientException(f"{field}[{i}]: command elements may not be empty strings")
    return list(items)


def resource_requirements(value: Any, field: str) -> dict[str, str]:
    """Returns {"VCPU": "2", "MEMORY": "2048", "GPU": "1"} from a resourceRequirements list."""
    found: dict[str, str] = {}
    for i, item in enumerate(validation.as_list(value, field)):
        path = f"{field}[{i}]"
        item = validation.as_dict(item, path)
        kind = validation.as_enum(validation.require(item, "type", f"{path}.type"), f"{path}.type", ("VCPU", "MEMORY", "GPU"))
        found[kind] = validation.as_str(validation.require(item, "value", f"{path}.value"), f"{path}.value", min_len=1)
    return found


def to_resources(req: dict[str, str], field: str) -> Resources:
    """Checks EC2 resource values: VCPU a number > 0, MEMORY an integer >= 4 MiB, GPU an integer >= 0."""
    try:
        vcpus = float(req["VCPU"])
    except KeyError:
        raise ClientException(f"{field}: a VCPU requirement is required (resourceRequirements or vcpus)") from None
    except ValueError:
        raise validation.fail(f"{field}.VCPU", "a number", req["VCPU"]) from None
    if vcpus <= 0:
        raise validation.fail(f"{field}.VCPU", "a number greater than 0", req["VCPU"])
    if not math.isfinite(vcpus) or vcpus > validation.INT_MAX:  # NaN compares false with everything: checked here
        raise validation.fail(f"{field}.VCPU", f"a finite number of at most {validation.INT_MAX}", req["VCPU"])
    try:
        memory = int(req["MEMORY"])
    except KeyError:
        raise ClientException(f"{field}: a MEMORY requirement is required (resourceRequirements or memory)") from None
    except ValueError:
        raise validation.fail(f"{field}.MEMORY", "an integer number of MiB", req["MEMORY"]) from None
    if memory < 4:
        raise validation.fail(f"{field}.MEMORY", "at least 4 MiB", req["MEMORY"])
    if memory > validation.INT_MAX:
        raise validation.fail(f"{field}.MEMORY", f"at most {validation.INT_MAX} MiB", req["MEMORY"])
    try:
        gpus = int(req.get("GPU", "0"))
    except ValueError:
        raise validation.fail(f"{field}.GPU", "an integer", req["GPU"]) from None
    if gpus < 0:
        raise validation.fail(f"{field}.GPU", "an integer of at least 0", req["GPU"])
    if gpus > validation.INT_MAX:
        raise validation.fail(f"{field}.GPU", f"an integer of at most {validation.INT_MAX}", req["GPU"])
    return Resources(vcpus=vcpus, memory_mib=memory, gpus=gpus)


def merge_requirements(base: dict[str, Any], field: str) -> dict[str, str]:
    """Reads resourceRequirements plus the deprecated vcpus/memory fields of a container block."""
    found = resource_requirements(base.get("resourceRequirements") or [], f"{field}.resourceRequirements")
    if base.get("vcpus") is not None:
        if "VCPU" in found:
            raise ClientException(f"{field}.vcpus: vCPUs are set both here and in resourceRequirements")
        found["VCPU"] = str(validation.as_int(base["vcpus"], f"{field}.vcpus", minimum=1))
    if base.get("memory") is not None:
        if "MEMORY" in found:
            raise ClientException(f"{field}.memory: memory is set both here and in resourceRequirements")
        found["MEMORY"] = str(validation.as_int(base["memory"], f"{field}.memory", minimum=4))
    return found


def substitute_refs(cmd: list[str], params: dict[str, str]) -> list[str]:
    """Replaces whole-element and in-string `Ref::name` placeholders in the command only.

    A placeholder with no value is passed through literally, as AWS does.
    """
    if not params or not any("Ref::" in part for part in cmd):
        return cmd
    out = []
    for part in cmd:
        if part.startswith("Ref::") and part[5:] in params:
            out.append(params[part[5:]])
        elif "Ref::" in part:
            # Longest names first so Ref::input does not eat Ref::inputfile.
            for name in sorted(params, key=len, reverse=True):
                part = part.replace(f"Ref::{name}", params[name])
            out.append(part)
        else:
            out.append(part)
    return out
