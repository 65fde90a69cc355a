"""The realism checks for the stream stack: updates replace nothing stateful or serving, and every
custom resource waits for its function and that function's role policy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.integration.infra.conftest import synth_environment
from tests.integration.infra.replacements import replacements
from tests.integration.infra.test_deploy_order_and_failures import _depends_on, _getatt_target, _role_policies

DATA = Path(__file__).parent / "data"
STACK = "Conveyor-thumbs"
# A replaced queue loses its messages; a replaced service or cluster stops every worker at once.
KEPT = {"AWS::SQS::Queue", "AWS::ECS::Cluster", "AWS::ECS::Service", "AWS::S3::Bucket", "AWS::DynamoDB::Table",
        "AWS::Events::EventBus"}


def _synth(workdir: Path, spec_text: str, name: str, version: str | None = None) -> dict[str, Any]:
    from infra.app import build_app

    spec = workdir / f"{name}.yaml"
    spec.write_text(spec_text)
    kwargs = {"version": version} if version else {}
    with synth_environment(workdir, region="us-east-1"):
        app = build_app({"conveyor:pipelines": [str(spec)], "conveyor:nag": "false",
                         "conveyor:smoke": {"thumbs": str(DATA / "sample.txt")}},
                        outdir=str(workdir / f"cdk.out.{name}"), source_dir=DATA, **kwargs)
        return app.synth().get_stack_by_name(STACK).template


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    work = tmp_path_factory.mktemp("stream-updates")
    shutil.copytree(DATA / "tools", work / "tools")  # the specs' `build:` folder, beside them
    base = (DATA / "stream.yaml").read_text()
    new_stage = base + ("  - name: index\n    foreach: item\n    after: [meta]\n"
                        "    command: [python, -m, index, \"{meta}\", \"{out}\"]\n")
    return {
        "base": _synth(work, base, "base"),
        "version bump": _synth(work, base, "bump", version="99.0.0"),
        "edited stage command": _synth(work, base.replace("-m, thumb,", "-m, thumb, --fast,"), "edit"),
        "new stage": _synth(work, new_stage, "new"),
    }


@pytest.mark.parametrize("change", ["version bump", "edited stage command", "new stage"])
def test_an_update_replaces_no_queue_service_cluster_bucket_table_or_bus(
        templates: dict[str, dict[str, Any]], change: str) -> None:
    found = replacements({STACK: templates["base"]}, {STACK: templates[change]})
    print(f"\n{change}: {len(found)} resource(s) would be replaced")
    for replacement in found:
        print(f"  {replacement}")
    assert [r for r in found if r.type in KEPT] == []
    assert templates[change] != templates["base"]  # the change reached the stack


def test_every_custom_resource_waits_for_its_function_and_its_role_policy(
        templates: dict[str, dict[str, Any]]) -> None:
    resources = templates["base"]["Resources"]
    custom = [name for name, r in resources.items() if r["Type"].startswith("Custom::")]
    assert {resources[name]["Type"] for name in custom} >= {"Custom::ConveyorStreamRelease",
                                                           "Custom::ConveyorStreamSmoke"}
    for name in custom:
        function = _getatt_target(resources[name]["Properties"]["ServiceToken"])
        role = _getatt_target(resources[function]["Properties"]["Role"])
        before = _depends_on(resources, name)
        assert function in before and role in before, name
        assert _role_policies(resources, role) <= before, name
