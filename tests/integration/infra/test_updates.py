"""Updates, not only creates: synthesize the app again after a change and see what CloudFormation would replace.

Three changes a user makes every week: a version bump, an edit to one stage's command, a new
stage. None of them may replace a compute environment, job queue, bucket, table or bus (that
would terminate running instances or lose data). What would be replaced is printed
(``pytest -s``) for every change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.infra.conftest import DATA, SPEC, synth_environment
from tests.integration.infra.replacements import protected, replacements

CHANGES = {
    "version bump": {"spec": SPEC, "version": "99.0.0"},
    "edited stage command": {"spec": DATA / "pipeline_edited_command.yaml"},
    "new stage": {"spec": DATA / "pipeline_new_stage.yaml"},
}


def _synth(workdir: Path, outdir: Path, spec: Path, version: str | None = None) -> dict[str, dict]:
    from infra.app import build_app

    kwargs = {"version": version} if version else {}
    # One working folder for every synth: Chalice reuses its package from ./chalice.out.
    with synth_environment(workdir, region="us-east-1"):
        app = build_app({"conveyor:pipelines": [str(spec)], "conveyor:nag": "false"}, outdir=str(outdir), **kwargs)
        assembly = app.synth()
    return {stack.stack_name: stack.template for stack in assembly.stacks}


@pytest.fixture(scope="module")
def updated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    workdir = tmp_path_factory.mktemp("updates")
    return {
        name: _synth(workdir, workdir / f"cdk.out.{i}", change["spec"], change.get("version"))
        for i, (name, change) in enumerate(CHANGES.items())
    }


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_update_replaces_no_compute_environment_queue_bucket_table_or_bus(synth, updated, change):
    found = replacements(synth.templates, updated[change])
    print(f"\n{change}: {len(found)} resource(s) would be replaced")
    for replacement in found:
        print(f"  {replacement}")
    assert protected(found) == [], "\n".join(str(r) for r in protected(found))


def test_the_changes_do_change_the_templates(synth, updated):
    """The comparison is not vacuous: each change reaches the pipeline stack."""
    stack = "Conveyor-infra-test"
    for change, templates in updated.items():
        assert templates[stack] != synth.templates[stack], change
    definitions = [r for r in updated["new stage"][stack]["Resources"].values()
                   if r["Type"] == "AWS::Batch::JobDefinition"]
    assert len(definitions) == 4
    bumped = updated["version bump"]
    assert any("99.0.0" in str(r.get("Properties", {})) for r in bumped[stack]["Resources"].values())
