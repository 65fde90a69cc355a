"""cdk.App; creates stages from context; defines no resources.

Context (cdk.json or ``-c key=value``):

* ``conveyor:pipelines``: spec files, one pipeline stack each (paths relative to the repo);
* ``conveyor:force``: ``true`` lets a deployment replace a newer version (downgrade);
* ``conveyor:interfaceEndpoints``: ``true`` puts Batch instances in isolated subnets
  behind interface endpoints (billed hourly) instead of public subnets;
* ``conveyor:maxVcpus``: ``{"spot": 256, "on-demand": 64, "gpu": 16}`` overrides;
* ``conveyor:runnableTimeLimit``: seconds a job may sit RUNNABLE before Batch cancels it (>= 600);
* ``conveyor:nag``: ``false`` skips the cdk-nag AwsSolutions checks (on by default);
* ``conveyor:smoke``: ``{"<stream pipeline>": "sample file"}``: every deploy of that stream must carry
  the sample through every stage, or it fails and rolls back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from chalicelib import __version__
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.spec import load_spec, parse_document
from chalicelib.pipeline.stream.settings import is_stream, load_stream_spec
from infra.stacks.compute import ComputeStack
from infra.stacks.network import NetworkStack
from infra.stacks.pipeline import PipelineStack
from infra.stacks.stream import StreamStack

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_PREFIX = "Conveyor"
# The version tag changes on every release; on these types `Tags` is create-only (compute
# environments; ComputeResources.Tags too) or has been seen to replace the resource (queues),
# so a version bump would replace them and terminate running instances.
UNTAGGED_BY_VERSION = ["AWS::Batch::ComputeEnvironment", "AWS::Batch::JobQueue"]
# Feature flags the app relies on (cdk.json may not be read, e.g. under `python -m infra.app`
# with another working directory): server access logs are granted by a bucket policy for
# logging.s3.amazonaws.com, not the legacy log-delivery ACL.
FEATURE_FLAGS = {"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True}


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _json(value: Any) -> Any:
    # `-c key=value` gives strings; cdk.json gives parsed JSON.
    return json.loads(value) if isinstance(value, str) else value


def stack_name_for(pipeline: str) -> str:
    return f"{STACK_PREFIX}-{pipeline}"


def build_app(context: Mapping[str, Any] | None = None, *, outdir: str | None = None,
              source_dir: Path = REPO_ROOT, version: str = __version__) -> cdk.App:
    """Builds the app (network, compute, one stack per pipeline spec); synth is the caller's.

    ``version`` is the release being deployed (``chalicelib.__version__``; the update checks
    synthesize a bumped one).

    Raises:
        SpecValidationError: a listed spec is invalid (the message names each field).
    """
    app = cdk.App(context={**FEATURE_FLAGS, **dict(context or {})}, outdir=outdir)
    ctx = app.node.try_get_context
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    network = NetworkStack(
        app, f"{STACK_PREFIX}-Network", env=env,
        interface_endpoints=_flag(ctx("conveyor:interfaceEndpoints") or False),
        description=f"Conveyor {version}: VPC with zero idle cost",
    )
    compute = ComputeStack(
        app, f"{STACK_PREFIX}-Compute", env=env,
        vpc=network.vpc, subnets=network.batch_subnets, security_group=network.security_group,
        max_vcpus=_json(ctx("conveyor:maxVcpus") or {}),
        runnable_limit_s=int(ctx("conveyor:runnableTimeLimit") or 1800),
        description=f"Conveyor {version}: Batch compute environments (0 vCPUs idle) and queues",
    )
    # Not app-wide: the Compute stack's own tags would reach its environments as stack tags.
    for stack in (network, *_pipeline_stacks(app, ctx, env, network, compute, source_dir, version)):
        cdk.Tags.of(stack).add("conveyor:version", version, exclude_resource_types=UNTAGGED_BY_VERSION)
    if _flag(ctx("conveyor:nag") if ctx("conveyor:nag") is not None else True):
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def _pipeline_stacks(app: cdk.App, ctx: Any, env: cdk.Environment, network: NetworkStack, compute: ComputeStack,
                     source_dir: Path, version: str) -> list[PipelineStack | StreamStack]:
    stacks: list[PipelineStack | StreamStack] = []
    for raw_path in _json(ctx("conveyor:pipelines") or []):
        spec_path = Path(raw_path)
        if not spec_path.is_absolute():
            spec_path = source_dir / spec_path
        if is_stream_file(spec_path):
            stream = load_stream_spec(spec_path)
            stacks.append(StreamStack(
                app, stack_name_for(stream.name), env=env, spec=stream, version=version, source_dir=source_dir,
                vpc=network.vpc, subnets=network.batch_subnets, security_group=network.security_group,
                force=_flag(ctx("conveyor:force") or False), smoke_sample=_smoke_sample(ctx, stream.name, source_dir),
                description=f"Conveyor {version}: stream pipeline {stream.name} (ECS on SQS)",
            ))
            continue
        spec = load_spec(spec_path)
        stacks.append(PipelineStack(
            app, stack_name_for(spec.name), env=env,
            spec=spec, spec_path=spec_path, queues=compute.queues, version=version,
            source_dir=source_dir, force=_flag(ctx("conveyor:force") or False),
            description=f"Conveyor {version}: pipeline {spec.name}",
        ))
    return stacks


def _smoke_sample(ctx: Any, pipeline: str, source_dir: Path) -> Path | None:
    """``conveyor:smoke`` maps a stream pipeline to a sample file its deploys must carry through."""
    raw = (_json(ctx("conveyor:smoke") or {}) or {}).get(pipeline)
    if not raw:
        return None
    path = Path(raw) if Path(raw).is_absolute() else source_dir / raw
    if not path.is_file():
        raise FileNotFoundError(f"conveyor:smoke.{pipeline}: no sample file at {path}")
    return path


def is_stream_file(spec_path: Path) -> bool:
    """Whether a spec file declares `mode: stream` (an unreadable one goes the batch way, which reports it)."""
    try:
        return is_stream(parse_document(spec_path.read_text(encoding="utf-8")))
    except (OSError, PipelineError):
        return False


def cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The ``context`` of cdk.json: defaults when the app runs without the CDK CLI."""
    try:
        return dict(json.loads(path.read_text()).get("context", {}))
    except FileNotFoundError:
        return {}


def main() -> None:
    # Under the CDK CLI, cdk.json's context already arrives through CDK_CONTEXT_JSON (and
    # wins, as does -c); run directly (`python -m infra.app`), cdk.json still applies.
    cli_context = json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}")
    build_app({**cdk_json_context(), **cli_context}).synth()


if __name__ == "__main__":
    main()
