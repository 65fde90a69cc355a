"""The stream stack as CloudFormation: queues and redrive, ECS services on Fargate Spot, scaling on
backlog per task with a 0 -> 1 step, alarms, arrivals routing, least-privilege task roles; cdk-nag
runs during synth (a finding fails it) and cfn-lint checks the template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.infra.conftest import synth_environment

DATA = Path(__file__).parent / "data"
STACK = "Conveyor-thumbs"


@pytest.fixture(scope="module")
def stream_synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    from infra.app import build_app

    work = tmp_path_factory.mktemp("cdk-stream")
    with synth_environment(work, region="us-east-1"):
        app = build_app({"conveyor:pipelines": [str(DATA / "stream.yaml")], "conveyor:smoke": {"thumbs": "sample.txt"}},
                        outdir=str(work / "cdk.out"),
                        source_dir=DATA)
        assembly = app.synth()  # cdk-nag AwsSolutions findings fail here
    return assembly.get_stack_by_name(STACK).template, work / "cdk.out"


def _resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def test_each_stage_has_a_queue_redriven_to_its_dead_letter_queue(stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    queues = _resources(template, "AWS::SQS::Queue")
    redriven = [q for q in queues if "RedrivePolicy" in q["Properties"]]
    assert len(redriven) == 2
    assert {q["Properties"]["RedrivePolicy"]["maxReceiveCount"] for q in redriven} == {3}
    assert {q["Properties"]["VisibilityTimeout"] for q in redriven} == {90}


def test_services_run_on_fargate_spot_with_a_base_on_demand_and_roll_back_failed_deployments(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    services = _resources(template, "AWS::ECS::Service")
    assert len(services) == 2
    for service in services:
        props = service["Properties"]
        assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        providers = {s["CapacityProvider"]: s for s in props["CapacityProviderStrategy"]}
        assert set(providers) == {"FARGATE", "FARGATE_SPOT"}
        assert providers["FARGATE_SPOT"]["Weight"] > providers["FARGATE"]["Weight"]
    assert sorted(s["Properties"]["DesiredCount"] for s in services) == [0, 1]  # min_workers per stage


def test_task_definitions_are_x86_sized_for_fargate_and_run_the_core_worker(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    for task in _resources(template, "AWS::ECS::TaskDefinition"):
        props = task["Properties"]
        assert props["RuntimePlatform"] == {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"}
        assert (props["Cpu"], props["Memory"]) == ("1024", "2048")  # 1 vCPU, 1,536 MiB -> the smallest size
        container = props["ContainerDefinitions"][0]
        assert container["Command"] == ["python", "-m", "chalicelib.aws.stream_worker"]
        assert container["StopTimeout"] == 120
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        names = [e["Name"] for e in container["Environment"]]
        assert "CONVEYOR_STREAM_WORKER" in names


def test_task_roles_name_every_action_and_scope_to_their_queues_and_prefixes(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    policies = _resources(template, "AWS::IAM::Policy")
    actions = [a for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert actions and not [a for a in actions if "*" in a]
    text = json.dumps(policies)
    assert "runs/thumbs-stream/thumb/*" in text and "runs/thumbs-stream/meta/*" in text


def test_scaling_tracks_backlog_per_task_with_metric_math_and_steps_from_zero(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    targets = _resources(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert sorted((t["Properties"]["MinCapacity"], t["Properties"]["MaxCapacity"]) for t in targets) == [(0, 5), (1, 2)]
    policies = _resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = [p for p in policies if p["Properties"]["PolicyType"] == "TargetTrackingScaling"]
    assert len(tracking) == 2
    config = tracking[0]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == 8
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["backlogPerTask"]["Expression"] == "visible / running"
    assert metrics["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert metrics["running"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    steps = [p for p in policies if p["Properties"]["PolicyType"] == "StepScaling"]
    assert steps, "a step policy must take the fleet from 0 to 1"
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    start = [a for a in alarms if any("FILL(running, 0) < 1" in m.get("Expression", "")
                                      for m in a["Properties"].get("Metrics", []))]
    assert len(start) == 2


def test_alarms_watch_dead_letters_old_messages_and_tasks_below_desired(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    described = [a["Properties"].get("AlarmDescription", "") for a in alarms]
    assert sum("dead-letter" in d for d in described) == 2
    assert sum("15 minutes" in d for d in described) == 2
    below = [a for a in alarms if "below desired" in a["Properties"].get("AlarmDescription", "")]
    assert len(below) == 2 and {a["Properties"]["EvaluationPeriods"] for a in below} == {10}


def test_uploads_under_the_inbox_reach_only_the_entry_stage_queue(stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    rules = [r for r in _resources(template, "AWS::Events::Rule")
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]]
    assert len(rules) == 1
    pattern = rules[0]["Properties"]["EventPattern"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "inbox/"}]
    targets = rules[0]["Properties"]["Targets"]
    assert len(targets) == 1 and "DeadLetterConfig" in targets[0]


def test_cfn_lint_finds_nothing_in_the_stream_template(stream_synth: tuple[dict[str, Any], Path]) -> None:
    _, outdir = stream_synth
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    # W3005/W3045 come from CDK's own constructs (see tests/integration/infra/test_checks.py).
    result = subprocess.run([str(cfn_lint), "--ignore-checks", "W3005", "W3045", "--",
                             str(outdir / f"{STACK}.template.json")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stream_stage_image_without_python_is_refused_with_the_fix(tmp_path: Path) -> None:
    from infra.app import build_app
    from infra.constructs.runner_images import ImageNotRunnableError

    spec = (DATA / "stream.yaml").read_text().replace("  build: tools\n", "  image: public.ecr.aws/docker/library/busybox:1\n")
    (tmp_path / "s.yaml").write_text(spec)
    with synth_environment(tmp_path, region="us-east-1"), pytest.raises(ImageNotRunnableError, match="build:"):
        build_app({"conveyor:pipelines": [str(tmp_path / "s.yaml")], "conveyor:nag": "false"},
                  outdir=str(tmp_path / "out"), source_dir=DATA)


def test_the_worker_imports_without_the_spec_machinery() -> None:
    """What a stage's image needs for the worker: chalicelib, boto3 and the standard library."""
    probe = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'yaml', 'jsonschema', 'rich', 'orjson', 'aws_lambda_powertools', 'chalice'}:\n"
        "            raise ImportError('not in a stage image: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import chalicelib.aws.stream_worker\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_task_images_are_pinned_by_digest_from_the_release_guard(stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    guard = [name for name, r in template["Resources"].items() if r["Type"] == "Custom::ConveyorStreamRelease"]
    assert len(guard) == 1
    for task in _resources(template, "AWS::ECS::TaskDefinition"):
        image = json.dumps(task["Properties"]["ContainerDefinitions"][0]["Image"])
        assert '"@"' in image and f'"{guard[0]}", "Image0Digest"' in image


def test_the_smoke_item_runs_after_every_service_and_on_every_new_task_definition(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, _ = stream_synth
    resources = template["Resources"]
    smoke = [r for r in resources.values() if r["Type"] == "Custom::ConveyorStreamSmoke"]
    assert len(smoke) == 1
    services = {name for name, r in resources.items() if r["Type"] == "AWS::ECS::Service"}
    assert services <= set(smoke[0]["DependsOn"])
    props = smoke[0]["Properties"]
    assert props["SinkStages"] == ["meta"] and len(props["TaskDefinitions"]) == 2
    assert props["RunPrefix"] == "runs/thumbs-stream/"


def test_the_deploy_function_bundle_is_the_bare_package_and_imports_with_the_stdlib_alone(
        stream_synth: tuple[dict[str, Any], Path]) -> None:
    template, outdir = stream_synth
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                    and r["Properties"].get("Handler") == "chalicelib.aws.stream_deploy.handler")
    s3_key = json.dumps(function["Properties"]["Code"]["S3Key"])
    bundle = next(d for d in outdir.glob("asset.*") if d.is_dir() and d.name.removeprefix("asset.") in s3_key)
    top = sorted(p.name for p in bundle.iterdir())
    assert top == ["chalicelib"], top
    # A fresh interpreter that sees only the bundle and the standard library (boto3 is imported in
    # the handler itself, which the Lambda runtime provides).
    probe = ("import sys; sys.path = [p for p in sys.path if 'site-packages' not in p]; "
             f"sys.path.insert(0, {str(bundle)!r}); import chalicelib.aws.stream_deploy as m; print(m.handler.__name__)")
    result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "handler", result.stderr
