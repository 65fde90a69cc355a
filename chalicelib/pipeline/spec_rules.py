"""Semantic checks of a spec document that JSON Schema cannot express.

They run on the raw document even when the schema found problems (so every
issue is reported at once), and skip any part whose shape is wrong; the
schema has already reported that part.

Rules (``SpecIssue.rule``):

* ``unique``: two stages share a name (reported on the later one).
* ``reserved-name``: a stage named ``item``, ``key`` or ``out``.
* ``known-stage``: an ``after`` entry that names no stage.
* ``acyclic``: stages that depend on each other in a loop.
* ``placeholder``: ``{x}`` in a command where x is not item/key/out or an
  upstream (direct or indirect) stage, or ``{key}`` in a stage without foreach.
* ``foreach``: the foreach mismatch rules: ``sequential`` without ``foreach``;
  ``allow_failed_items`` on a foreach stage, or on a stage with no foreach
  stage in ``after`` (it has no items to tolerate).
* ``image-or-build``: a stage giving both ``image`` and ``build``.
* ``build-folder``: ``build`` folder missing (checked when loaded from a file).
* ``compute-limits``: resources no instance of the compute class can hold,
  or GPUs on a class other than ``gpu`` (see ``model.COMPUTE_LIMITS``).
* ``regex``: ``items.group`` is not a regex with a named group ``key``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chalicelib.pipeline.errors import SpecIssue
from chalicelib.pipeline.model import COMPUTE_LIMITS, ComputeClass
from chalicelib.pipeline.placeholders import BUILTIN, find_placeholders
from chalicelib.pipeline.schema_issues import short_repr

GROUP_ALIASES = {"sample": r"(?P<key>.+?)_R?[12](?=[._])[^/]*$"}


def check_rules(document: Any, base_dir: Path | None) -> list[SpecIssue]:
    """Every semantic issue in ``document`` (a parsed spec)."""
    if not isinstance(document, dict):
        return []
    issues: list[SpecIssue] = []
    stages = _stage_dicts(document)
    names = _check_names(stages, issues)
    upstream = _check_after(stages, names, issues)
    defaults = _mapping(document.get("defaults"))
    for index, stage in stages:
        path = f"$.stages[{index}]"
        _check_foreach(stage, path, stages, issues)
        _check_placeholders(stage, path, upstream, issues)
        _check_image(stage, path, base_dir, issues)
        _check_resources(stage, path, defaults, issues)
    if defaults:
        _check_image(defaults, "$.defaults", base_dir, issues)
    _check_items(document.get("items"), issues)
    return issues


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _stage_dicts(document: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    raw = document.get("stages")
    if not isinstance(raw, list):
        return []
    return [(i, s) for i, s in enumerate(raw) if isinstance(s, dict)]


def _name_of(stage: dict[str, Any]) -> str | None:
    name = stage.get("name")
    return name if isinstance(name, str) else None


def _check_names(stages: list[tuple[int, dict[str, Any]]], issues: list[SpecIssue]) -> list[str]:
    seen: dict[str, int] = {}
    for index, stage in stages:
        name = _name_of(stage)
        if name is None:
            continue
        if name in BUILTIN:
            issues.append(SpecIssue(f"$.stages[{index}].name", "reserved-name",
                                    f"{name!r} is a placeholder name; choose another stage name"))
        if name in seen:
            issues.append(SpecIssue(f"$.stages[{index}].name", "unique",
                                    f"duplicate stage name {name!r} (first at $.stages[{seen[name]}])"))
        else:
            seen[name] = index
    return list(seen)


def _check_after(
    stages: list[tuple[int, dict[str, Any]]], names: list[str], issues: list[SpecIssue]
) -> dict[str, set[str]]:
    """Checks ``after`` entries and cycles; returns each stage's transitive upstream set."""
    direct: dict[str, list[str]] = {}
    expected = ", ".join(names)
    for index, stage in stages:
        after = stage.get("after")
        if not isinstance(after, list):
            after = []
        known = []
        for j, entry in enumerate(after):
            if not isinstance(entry, str):
                continue
            if entry not in names:
                issues.append(SpecIssue(f"$.stages[{index}].after[{j}]", "known-stage",
                                        f"unknown stage {short_repr(entry)} (expected one of: {expected})"))
            else:
                known.append(entry)
        name = _name_of(stage)
        if name is not None and name not in direct:
            direct[name] = known
    order = {name: i for i, name in enumerate(names)}
    for cycle in _find_cycles(direct):
        # Start the loop at the stage that comes first in the spec, in flow order.
        start = min(range(len(cycle)), key=lambda k: order.get(cycle[k], 0))
        cycle = cycle[start:] + cycle[:start]
        first = cycle[0]
        index = next(i for i, s in stages if _name_of(s) == first)
        issues.append(SpecIssue(f"$.stages[{index}].after", "acyclic",
                                f"stages form a cycle: {' -> '.join([*cycle, first])}"))
    return {name: _closure(name, direct) for name in direct}


def _find_cycles(direct: dict[str, list[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for up in direct.get(node, []):
            if state.get(up) == 1:
                cycle = stack[stack.index(up):]
                cycles.append(list(reversed(cycle)))
            elif up not in state:
                visit(up)
        stack.pop()
        state[node] = 2

    for node in direct:
        if node not in state:
            visit(node)
    return cycles


def _closure(name: str, direct: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(direct.get(name, []))
    while todo:
        current = todo.pop()
        if current not in seen and current != name:
            seen.add(current)
            todo.extend(direct.get(current, []))
    return seen


def _check_foreach(
    stage: dict[str, Any], path: str, stages: list[tuple[int, dict[str, Any]]], issues: list[SpecIssue]
) -> None:
    foreach = stage.get("foreach") == "item"
    if stage.get("sequential") is True and not foreach:
        issues.append(SpecIssue(f"{path}.sequential", "foreach",
                                "sequential needs foreach: item (it orders the items of an array)"))
    if stage.get("allow_failed_items") is True:
        if foreach:
            issues.append(SpecIssue(f"{path}.allow_failed_items", "foreach",
                                    "allow_failed_items is for a join: remove foreach or this flag"))
            return
        by_name = {_name_of(s): s for _, s in stages}
        after = stage.get("after")
        after = after if isinstance(after, list) else []
        if not any(isinstance(by_name.get(a), dict) and by_name[a].get("foreach") == "item"
                   for a in after if isinstance(a, str)):
            issues.append(SpecIssue(f"{path}.allow_failed_items", "foreach",
                                    "allow_failed_items needs a foreach stage in after (a join over items)"))


def _check_placeholders(
    stage: dict[str, Any], path: str, upstream: dict[str, set[str]], issues: list[SpecIssue]
) -> None:
    command = stage.get("command")
    name = _name_of(stage)
    if not isinstance(command, list):
        return
    allowed = upstream.get(name, set()) if name else set()
    foreach = stage.get("foreach") == "item"
    for j, argument in enumerate(command):
        if not isinstance(argument, str):
            continue
        for placeholder in find_placeholders(argument):
            where = f"{path}.command[{j}]"
            if placeholder == "key" and not foreach:
                issues.append(SpecIssue(where, "placeholder", "{key} needs foreach: item (a join has many items)"))
            elif placeholder not in BUILTIN and placeholder not in allowed:
                choices = ", ".join([*BUILTIN, *sorted(allowed)])
                issues.append(SpecIssue(where, "placeholder",
                                        f"unknown placeholder {{{placeholder}}} (expected one of: {choices}; "
                                        "a stage placeholder must name an upstream stage)"))


def _check_image(stage: dict[str, Any], path: str, base_dir: Path | None, issues: list[SpecIssue]) -> None:
    if "image" in stage and "build" in stage:
        issues.append(SpecIssue(f"{path}.build", "image-or-build", "give either image or build, not both"))
    build = stage.get("build")
    if isinstance(build, str) and base_dir is not None and not (base_dir / build).is_dir():
        issues.append(SpecIssue(f"{path}.build", "build-folder",
                                f"build folder {short_repr(build)} not found next to the spec"))


def _check_resources(
    stage: dict[str, Any], path: str, defaults: dict[str, Any], issues: list[SpecIssue]
) -> None:
    own = _mapping(stage.get("resources"))
    base = _mapping(defaults.get("resources"))
    compute_raw = stage.get("compute", defaults.get("compute", "spot"))
    try:
        compute = ComputeClass(compute_raw)
    except ValueError:
        return  # the schema reports a bad compute class
    limits = COMPUTE_LIMITS[compute]
    checks = (("vcpus", limits.max_vcpus, "vCPUs"), ("memory", limits.max_memory, "MiB"),
              ("gpus", limits.max_gpus, "GPUs"))
    for key, limit, unit in checks:
        value = own.get(key, base.get(key))
        if not isinstance(value, int) or isinstance(value, bool) or value <= limit:
            continue
        where = f"{path}.resources.{key}" if key in own else f"$.defaults.resources.{key}"
        if key == "gpus" and limit == 0:
            message = f"{value} GPUs need compute: gpu (this stage uses {compute.value})"
        else:
            message = f"{compute.value} jobs can have at most {limit} {unit}, got {value}"
        issues.append(SpecIssue(where, "compute-limits", message))


def _check_items(items: Any, issues: list[SpecIssue]) -> None:
    if not isinstance(items, dict):
        return
    for field in ("group", "group_by"):
        group = items.get(field)
        if not isinstance(group, str):
            continue
        try:
            compiled = re.compile(GROUP_ALIASES.get(group, group))
        except re.error as err:
            issues.append(SpecIssue(f"$.items.{field}", "regex", f"not a valid regular expression: {err}"))
            continue
        if "key" not in compiled.groupindex:
            issues.append(SpecIssue(f"$.items.{field}", "regex",
                                    "expected a regex with a named group 'key', e.g. (?P<key>.+)_R[12]\\.fq"))
