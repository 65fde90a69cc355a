"""YAML text -> validated PipelineSpec (schema and semantic checks, defaults applied).

Built-in defaults (documented in ``pipeline.schema.json`` and
``docs/pipeline-spec.md``): 1 vCPU, 2048 MiB, 0 GPUs, compute ``spot``, no
timeout. Retries depend on the compute class:

* ``spot``: 10 attempts with these evaluateOnExit rules (first match wins)::

      RETRY  on_status_reason "Host EC2*"              Spot reclaim / host lost
      RETRY  on_reason        "Cannot*"                CannotPullContainerError,
                                                       CannotStartContainerError,
                                                       CannotCreateContainerError,
                                                       CannotInspectContainerError
      RETRY  on_status_reason "Task failed to start*"  ECS task never started
      RETRY  on_reason        "DockerTimeoutError*"    container runtime timed out
      EXIT   on_reason        "*"                      anything else (tool errors)

  A container that never started has no exit code, and ``onExitCode`` can
  never match a missing code, so start failures are caught by the reason
  texts Batch writes for them instead (``container.reason`` for
  Cannot*/DockerTimeoutError, ``statusReason`` for "Task failed to start").
  The final ``EXIT on_reason "*"`` matches every remaining attempt, with or
  without a reason, so a tool's non-zero exit fails fast instead of burning
  10 attempts. Batch allows 5 rules, hence the ``Cannot*`` prefix.
* ``on-demand`` and ``gpu``: 1 attempt (no rules).

A stage's ``retries.attempts`` alone keeps the class's rules; giving
``evaluate_on_exit`` replaces them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from chalicelib.pipeline.errors import SpecIssue, SpecValidationError
from chalicelib.pipeline.model import (
    ComputeClass,
    ItemsSource,
    PipelineSpec,
    Resources,
    RetryPolicy,
    RetryRule,
    Stage,
    Trigger,
)
from chalicelib.pipeline.schema_issues import check_schema
from chalicelib.pipeline.spec_rules import GROUP_ALIASES, check_rules
from chalicelib.pipeline.stream_rules import check_stream_rules

DEFAULT_RESOURCES = Resources(vcpus=1, memory=2048, gpus=0)
DEFAULT_COMPUTE = ComputeClass.SPOT
SPOT_ATTEMPTS = 10
SPOT_RETRY_RULES: tuple[RetryRule, ...] = (
    RetryRule("RETRY", on_status_reason="Host EC2*"),
    RetryRule("RETRY", on_reason="Cannot*"),
    RetryRule("RETRY", on_status_reason="Task failed to start*"),
    RetryRule("RETRY", on_reason="DockerTimeoutError*"),
    RetryRule("EXIT", on_reason="*"),
)


def default_retry(compute: ComputeClass) -> RetryPolicy:
    """The retry policy a stage gets on ``compute`` when it sets none."""
    if compute is ComputeClass.SPOT:
        return RetryPolicy(attempts=SPOT_ATTEMPTS, evaluate_on_exit=SPOT_RETRY_RULES)
    return RetryPolicy(attempts=1)


def load_spec(source: str | os.PathLike[str]) -> PipelineSpec:
    """Loads and validates a spec from a file path, or from YAML/JSON text.

    A string containing a newline, or starting with ``{``, is text; anything
    else is a path. Relative ``build`` folders resolve against the file's folder
    (the current folder for text).

    Raises:
        SpecValidationError: every problem found, sorted by path.
    """
    text, base_dir = _read(source)
    return validated_spec(parse_document(text), base_dir)


def validate_document(document: Any, base_dir: Path | None) -> None:
    """Raises SpecValidationError with every schema and semantic issue of a spec document, sorted by path.

    The one validation of a spec: files (``load_spec``) and the documents runs carry
    (``runs.create_run``) both come through here.
    """
    issues = check_schema(document) + check_rules(document, base_dir) + check_stream_rules(document)
    if issues:
        raise SpecValidationError(_dedupe(issues))


def validated_spec(document: Any, base_dir: Path | None) -> PipelineSpec:
    """``validate_document``, then ``build_spec`` (relative ``build`` folders against ``base_dir`` or cwd)."""
    validate_document(document, base_dir)
    return build_spec(document, base_dir or Path.cwd())


def _read(source: str | os.PathLike[str]) -> tuple[str, Path | None]:
    if isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        return source, None
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), path.resolve().parent
    except FileNotFoundError:
        raise SpecValidationError([SpecIssue("$", "file", f"spec file not found: {path}")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecValidationError([SpecIssue("$", "file", f"cannot read {path}: {err}")]) from None


def parse_document(text: str) -> Any:
    """Parses YAML (JSON is YAML); a syntax error becomes a SpecIssue with its line.

    Raises:
        SpecValidationError: the text is not YAML or not a mapping.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = err.problem or "invalid YAML"
        raise SpecValidationError([SpecIssue("$", "yaml", f"{where}{problem}")]) from None
    except yaml.YAMLError as err:
        raise SpecValidationError([SpecIssue("$", "yaml", f"invalid YAML: {err}")]) from None
    if not isinstance(document, dict):
        kind = "empty" if document is None else type(document).__name__
        raise SpecValidationError([SpecIssue("$", "type", f"expected a mapping at the top, got {kind}")])
    return document


def _dedupe(issues: list[SpecIssue]) -> list[SpecIssue]:
    return list(dict.fromkeys(issues))


def build_spec(document: dict[str, Any], base_dir: Path) -> PipelineSpec:
    """Builds the PipelineSpec from a document that passed validation, applying defaults."""
    defaults = document.get("defaults", {})
    stages = tuple(_build_stage(raw, defaults, base_dir) for raw in document["stages"])
    return PipelineSpec(
        name=document["name"],
        stages=stages,
        items=_build_items(document.get("items", {}), base_dir),
        trigger=_build_trigger(document.get("trigger", {})),
        base_dir=str(base_dir),
    )


def _build_stage(raw: dict[str, Any], defaults: dict[str, Any], base_dir: Path) -> Stage:
    def pick(key: str) -> Any:
        return raw.get(key, defaults.get(key))

    compute = ComputeClass(pick("compute") or DEFAULT_COMPUTE.value)
    merged_resources = {**defaults.get("resources", {}), **raw.get("resources", {})}
    resources = Resources(
        vcpus=merged_resources.get("vcpus", DEFAULT_RESOURCES.vcpus),
        memory=merged_resources.get("memory", DEFAULT_RESOURCES.memory),
        gpus=merged_resources.get("gpus", DEFAULT_RESOURCES.gpus),
    )
    # A stage's own image or build replaces both of the defaults'.
    if "image" in raw or "build" in raw:
        image, build = raw.get("image"), raw.get("build")
    else:
        image, build = defaults.get("image"), defaults.get("build")
    environment = {**defaults.get("environment", {}), **raw.get("environment", {})}
    return Stage(
        name=raw["name"],
        command=tuple(raw["command"]),
        image=image,
        build=str((base_dir / build).resolve()) if build else None,
        resources=resources,
        compute=compute,
        retry=_build_retry({**defaults.get("retries", {}), **raw.get("retries", {})}, compute),
        timeout=pick("timeout"),
        environment=tuple(sorted((k, _env_value(v)) for k, v in environment.items())),
        foreach=raw.get("foreach") == "item",
        after=tuple(raw.get("after", ())),
        sequential=bool(raw.get("sequential", False)),
        allow_failed_items=bool(raw.get("allow_failed_items", False)),
    )


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _build_retry(raw: dict[str, Any], compute: ComputeClass) -> RetryPolicy:
    base = default_retry(compute)
    if "evaluate_on_exit" in raw:
        rules = tuple(RetryRule.from_dict(rule) for rule in raw["evaluate_on_exit"])
    else:
        rules = base.evaluate_on_exit
    return RetryPolicy(attempts=raw.get("attempts", base.attempts), evaluate_on_exit=rules)


def _build_items(raw: dict[str, Any], base_dir: Path) -> ItemsSource:
    group = raw.get("group", raw.get("group_by"))
    source = raw.get("source")
    manifest = raw.get("manifest")
    return ItemsSource(
        source=_resolve_location(source, base_dir) if source else None,
        pattern=raw.get("pattern", "*"),
        group=GROUP_ALIASES.get(group, group) if group else None,
        manifest=_resolve_location(manifest, base_dir) if manifest else None,
    )


def _resolve_location(location: str, base_dir: Path) -> str:
    """URIs stay as they are; a plain path is made absolute against the spec's folder."""
    if "://" in location:
        return location
    return str((base_dir / location).resolve())


def _build_trigger(raw: dict[str, Any]) -> Trigger:
    return Trigger(mode=raw.get("mode", "per_manifest"), schedule=raw.get("schedule"))
