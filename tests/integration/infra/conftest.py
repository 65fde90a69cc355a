"""One synthesized app for every CDK test (synth packages the Chalice app and runs cdk-nag: seconds)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SPEC = DATA / "pipeline.yaml"
PIPELINE_STACK = "Conveyor-infra-test"


@dataclass(frozen=True)
class Synth:
    outdir: Path
    templates: dict[str, dict]
    assertions: dict[str, object]  # stack name -> aws_cdk.assertions.Template


@contextmanager
def synth_environment(workdir: Path, *, region: str | None) -> Iterator[None]:
    """cwd = ``workdir`` (the Chalice construct writes ./chalice.out) and CDK_DEFAULT_REGION set or not."""
    previous_cwd, previous_region = os.getcwd(), os.environ.pop("CDK_DEFAULT_REGION", None)
    if region:
        os.environ["CDK_DEFAULT_REGION"] = region
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        os.environ.pop("CDK_DEFAULT_REGION", None)
        if previous_region is not None:
            os.environ["CDK_DEFAULT_REGION"] = previous_region


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from aws_cdk import assertions

    from infra.app import build_app

    work = tmp_path_factory.mktemp("cdk")
    # As under `cdk synth` with a configured region (the CLI sets CDK_DEFAULT_REGION).
    with synth_environment(work, region="us-east-1"):
        app = build_app({"conveyor:pipelines": [str(SPEC)]}, outdir=str(work / "cdk.out"))
        assembly = app.synth()  # raises if any cdk-nag AwsSolutions finding is unacknowledged
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return Synth(
        outdir=work / "cdk.out",
        templates=templates,
        assertions={name: assertions.Template.from_json(t) for name, t in templates.items()},
    )
