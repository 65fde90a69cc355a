"""Planned job -> SubmitJob request dict, and stage -> RegisterJobDefinition dict; the one builder of Batch payloads.

Used by the submitter (local engine and AWS alike) and by anything that needs the same request
(e.g. the state machine's task input). Only this module spells Batch's camelCase request keys.

What goes where:

* the **job definition** (one per stage, registered only when its content hash changes) holds
  the image, resources, environment, retry strategy and timeout, and a runner command with a
  ``Ref::runPrefix`` placeholder (documentation of the shape; every submit overrides it);
* the **SubmitJob request** holds what is run-specific and small: the runner command for this
  job (run prefix, stage, chunk offset, join item list), dependencies, array size and tags. No
  request grows with the number of items: items live in the run's manifest.

Barrier jobs (planner fan-in narrowing) reuse their stage's definition with the command ``true``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.pipeline.invocation import build_runner_argv
from chalicelib.pipeline.model import JobKind, PipelineSpec, PlannedJob, Stage, batch_safe_name

HASH_KEY = "conveyorHash"
PREFIX_PLACEHOLDER = "Ref::runPrefix"
BARRIER_COMMAND = ("true",)


@dataclass(frozen=True)
class SubmitContext:
    """Run-wide inputs of every SubmitJob request of one run.

    ``queues`` maps a compute class (``spot``, ``on-demand``, ``gpu``) to a job queue name;
    ``definitions`` maps a stage name to the job definition to submit against (``name:rev``
    or an ARN). ``join_items`` maps a join stage to the item-list URI it runs over (deferred
    ``allow_failed_items`` joins: the succeeded items); other joins run over every item.
    """

    run_id: str
    prefix: str
    queues: Mapping[str, str]
    definitions: Mapping[str, str]
    join_items: Mapping[str, str] = field(default_factory=dict)
    python: str = "python"


def definition_name(pipeline: str, stage: str) -> str:
    """Deterministic Batch-safe job definition name for a pipeline's stage (<=128 chars)."""
    return batch_safe_name(f"conveyor-{pipeline}-{stage}")


def stage_image(stage: Stage) -> str:
    """The image a stage runs: its ``image``, or ``file://<build folder>`` for a local build.

    Locally the engine runs a ``file://`` image by prepending that folder to PATH and
    PYTHONPATH (no Docker needed); on AWS CDK builds the folder and hands over a
    stage-to-definition map instead, so this value is never used there.
    """
    if stage.image:
        return stage.image
    if stage.build:
        return "file://" + str(Path(stage.build).resolve())
    # The schema requires one of image/build; a stage without either runs on the host.
    return "file://" + str(Path.cwd().resolve())


def upstream_shapes(spec: PipelineSpec, stage: Stage) -> dict[str, str]:
    """Every ancestor stage the command may reference as ``{name}``, with its output shape."""
    shapes: dict[str, str] = {}
    pending = list(stage.after)
    while pending:
        name = pending.pop()
        if name in shapes:
            continue
        upstream = spec.stage(name)
        shapes[name] = "foreach" if upstream.foreach else "join"
        pending.extend(upstream.after)
    return shapes


def runner_command(
    spec: PipelineSpec,
    stage: Stage,
    *,
    run_prefix: str,
    offset: int = 0,
    items: str | None = None,
    python: str = "python",
) -> list[str]:
    """The job command: the runner wrapping the stage's tool command."""
    return build_runner_argv(
        run_prefix=run_prefix,
        stage=stage.name,
        tool_argv=stage.command,
        offset=offset,
        join=not stage.foreach,
        items=items if not stage.foreach else None,
        upstream=upstream_shapes(spec, stage),
        python=python,
    )


def to_resource_requirements(stage: Stage) -> list[dict[str, str]]:
    reqs = [
        {"type": "VCPU", "value": str(stage.resources.vcpus)},
        {"type": "MEMORY", "value": str(stage.resources.memory)},
    ]
    if stage.resources.gpus:
        reqs.append({"type": "GPU", "value": str(stage.resources.gpus)})
    return reqs


def to_retry_strategy(stage: Stage) -> dict[str, Any]:
    rules = [rule.to_batch() for rule in stage.retry.evaluate_on_exit]
    strategy: dict[str, Any] = {"attempts": stage.retry.attempts}
    if rules:
        strategy["evaluateOnExit"] = rules
    return strategy


def to_job_definition(spec: PipelineSpec, stage: Stage, *, python: str = "python") -> dict[str, Any]:
    """RegisterJobDefinition request for a stage, tagged with its content hash."""
    request: dict[str, Any] = {
        "jobDefinitionName": definition_name(spec.name, stage.name),
        "type": "container",
        "containerProperties": {
            "image": stage_image(stage),
            "command": runner_command(
                spec, stage, run_prefix=PREFIX_PLACEHOLDER, python=python
            ),
            "resourceRequirements": to_resource_requirements(stage),
            "environment": [{"name": k, "value": v} for k, v in sorted(stage.environment)],
        },
        "retryStrategy": to_retry_strategy(stage),
    }
    if stage.timeout is not None:
        request["timeout"] = {"attemptDurationSeconds": stage.timeout}
    digest = content_hash(request)
    # Stored both as a parameter (returned by every DescribeJobDefinitions implementation)
    # and as a tag (visible in the console); comparison reads the parameter.
    request["parameters"] = {HASH_KEY: digest}
    request["tags"] = {HASH_KEY: digest, "conveyor:pipeline": spec.name, "conveyor:stage": stage.name}
    return request


def content_hash(request: Mapping[str, Any]) -> str:
    """Stable hash of a definition request's content (ignores the hash fields themselves)."""
    content = {k: v for k, v in request.items() if k not in ("parameters", "tags")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def to_submit_job(
    spec: PipelineSpec,
    job: PlannedJob,
    ctx: SubmitContext,
    job_ids: Mapping[str, str],
) -> dict[str, Any]:
    """SubmitJob request for one planned job; ``job_ids`` maps planned keys to Batch job ids.

    Raises:
        KeyError: a dependency not submitted yet, or a stage without a definition or queue.
    """
    stage = spec.stage(job.stage)
    if job.kind is JobKind.BARRIER:
        command = list(BARRIER_COMMAND)
    else:
        command = runner_command(
            spec, stage, run_prefix=ctx.prefix, offset=job.offset,
            items=ctx.join_items.get(stage.name), python=ctx.python,
        )
    request: dict[str, Any] = {
        "jobName": job.name,
        "jobQueue": ctx.queues[stage.compute.value],
        "jobDefinition": ctx.definitions[stage.name],
        "containerOverrides": {"command": command},
        "tags": {"conveyor:run": ctx.run_id, "conveyor:stage": stage.name, "conveyor:job": job.key},
    }
    if job.array_size is not None:
        request["arrayProperties"] = {"size": job.array_size}
    depends_on = []
    for dep in job.depends_on:
        entry: dict[str, str] = {}
        if dep.job_key is not None:
            entry["jobId"] = job_ids[dep.job_key]
        if dep.type is not None:
            entry["type"] = dep.type.value
        depends_on.append(entry)
    if depends_on:
        request["dependsOn"] = depends_on
    return request
