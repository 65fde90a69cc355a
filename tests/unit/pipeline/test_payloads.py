"""Payload builder: job definitions with content hash, SubmitJob requests that never grow with items."""

from __future__ import annotations

import json

from chalicelib.pipeline import payloads
from chalicelib.pipeline.invocation import parse_runner_argv
from chalicelib.pipeline.planner import plan
from chalicelib.pipeline.spec import load_spec

SPEC = """
name: demo
stages:
  - name: qc
    image: public.ecr.aws/x/qc:1
    command: [qc, "{item}", "{out}"]
    foreach: item
    environment: {MODE: fast}
  - name: align
    build: tools
    command: [align, "{qc}", "{out}"]
    foreach: item
    after: [qc]
    resources: {vcpus: 2, memory: 1024}
    timeout: 120
  - name: joint
    image: public.ecr.aws/x/joint:1
    command: [joint, "{align}", "{out}"]
    after: [align]
    compute: on-demand
"""


def _ctx(run_id: str = "r1") -> payloads.SubmitContext:
    return payloads.SubmitContext(
        run_id=run_id, prefix="file:///data/runs/r1", queues={"spot": "q-spot", "on-demand": "q-od", "gpu": "q-gpu"},
        definitions={"qc": "d-qc:1", "align": "d-align:3", "joint": "d-joint:2"},
    )


def test_job_definition_holds_image_resources_retry_timeout_and_hash(tmp_path) -> None:
    (tmp_path / "tools").mkdir()
    spec_file = tmp_path / "p.yaml"
    spec_file.write_text(SPEC)
    spec = load_spec(spec_file)
    request = payloads.to_job_definition(spec, spec.stage("align"))
    props = request["containerProperties"]
    assert request["jobDefinitionName"] == "conveyor-demo-align"
    assert props["image"] == f"file://{tmp_path / 'tools'}"
    assert props["resourceRequirements"] == [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "1024"}]
    assert request["timeout"] == {"attemptDurationSeconds": 120}
    assert request["retryStrategy"]["attempts"] == 10  # spot default
    assert request["retryStrategy"]["evaluateOnExit"][0] == {"action": "RETRY", "onStatusReason": "Host EC2*"}
    assert request["retryStrategy"]["evaluateOnExit"][-1] == {"action": "EXIT", "onReason": "*"}
    assert request["parameters"][payloads.HASH_KEY] == request["tags"][payloads.HASH_KEY]
    args = parse_runner_argv(props["command"][3:])
    assert (args.run_prefix, args.stage, args.tool_argv) == ("Ref::runPrefix", "align", ("align", "{qc}", "{out}"))


def test_hash_changes_only_with_content(tmp_path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "p.yaml").write_text(SPEC)
    (tmp_path / "q.yaml").write_text(SPEC.replace("MODE: fast", "MODE: slow"))
    one, two = load_spec(tmp_path / "p.yaml"), load_spec(tmp_path / "q.yaml")
    h = lambda s, n: payloads.to_job_definition(s, s.stage(n))["parameters"][payloads.HASH_KEY]  # noqa: E731
    assert h(one, "qc") == h(load_spec(tmp_path / "p.yaml"), "qc")
    assert h(one, "qc") != h(two, "qc")
    assert h(one, "align") == h(two, "align")


def test_submit_requests_do_not_grow_with_items(tmp_path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "p.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "p.yaml")
    sizes = []
    for count in (2_000, 9_000):  # same number of digits in the array size
        planned = plan(spec, count, run_id="r1")
        ids = {job.key: f"id-{job.key}" for job in planned.jobs}
        sizes.append([len(json.dumps(payloads.to_submit_job(spec, j, _ctx(), ids))) for j in planned.jobs])
    assert sizes[0] == sizes[1]


def test_submit_request_for_n_to_n_array_and_join(tmp_path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "p.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "p.yaml")
    planned = plan(spec, 5, run_id="r1")
    ids = {"qc": "id-qc", "align": "id-align"}
    align = payloads.to_submit_job(spec, planned.job("align"), _ctx(), ids)
    assert align["jobName"] == "r1-align"
    assert align["jobQueue"] == "q-spot"
    assert align["jobDefinition"] == "d-align:3"
    assert align["arrayProperties"] == {"size": 5}
    assert align["dependsOn"] == [{"jobId": "id-qc", "type": "N_TO_N"}]
    args = parse_runner_argv(align["containerOverrides"]["command"][3:])
    assert (args.run_prefix, args.stage, args.join, dict(args.upstream)) == (
        "file:///data/runs/r1", "align", False, {"qc": "foreach"},
    )
    joint = payloads.to_submit_job(spec, planned.job("joint"), _ctx(), ids)
    assert joint["jobQueue"] == "q-od"
    assert "arrayProperties" not in joint
    assert joint["dependsOn"] == [{"jobId": "id-align"}]
    args = parse_runner_argv(joint["containerOverrides"]["command"][3:])
    assert args.join and dict(args.upstream) == {"align": "foreach", "qc": "foreach"}


def test_barrier_jobs_run_true_on_their_stage_definition(tmp_path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "p.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "p.yaml")
    planned = plan(spec, 9, run_id="r1", array_limit=2, dependency_limit=2)
    barriers = [j for j in planned.jobs if j.kind.value == "barrier"]
    assert barriers
    ids = {j.key: f"id-{j.key}" for j in planned.jobs}
    request = payloads.to_submit_job(spec, barriers[0], _ctx(), ids)
    assert request["containerOverrides"]["command"] == ["true"]
    assert request["jobDefinition"] == _ctx().definitions[barriers[0].stage]
