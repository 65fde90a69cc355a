"""One synthesized app for every CDK test (synth packages the Chalice app and runs cdk-nag: seconds)."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from aws_cdk import assertions

    from infra.app import build_app

    work = tmp_path_factory.mktemp("cdk")
    previous = os.getcwd()
    # The Chalice construct writes its package under ./chalice.out: keep it out of the repo.
    os.chdir(work)
    try:
        app = build_app({"conveyor:pipelines": [str(SPEC)]}, outdir=str(work / "cdk.out"))
        assembly = app.synth()  # raises if any cdk-nag AwsSolutions finding is unacknowledged
    finally:
        os.chdir(previous)
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return Synth(
        outdir=work / "cdk.out",
        templates=templates,
        assertions={name: assertions.Template.from_json(t) for name, t in templates.items()},
    )
