"""What a first deploy needs beyond a valid template: ordering, failure paths, current images and logs."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.infra.conftest import PIPELINE_STACK

ASYNC_FUNCTIONS = {"Trigger", "Tracker", "ExecutionEnded"}


def _resources(synth, stack: str = PIPELINE_STACK) -> dict[str, dict[str, Any]]:
    return synth.templates[stack]["Resources"]


def _getatt_target(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return None


def _depends_on(resources: dict[str, dict[str, Any]], name: str) -> set[str]:
    """Everything ``name`` waits for: DependsOn and Ref/GetAtt, transitively."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = resources[pending.pop()]
        direct = current.get("DependsOn", [])
        direct = [direct] if isinstance(direct, str) else list(direct)
        text = json.dumps(current.get("Properties", {}))
        direct += [logical for logical in resources if f'"Ref": "{logical}"' in text or f'["{logical}", ' in text]
        for logical in direct:
            if logical not in seen and logical in resources:
                seen.add(logical)
                pending.append(logical)
    return seen


def _role_policies(resources: dict[str, dict[str, Any]], role: str) -> set[str]:
    return {
        logical for logical, r in resources.items()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"].get("Roles", [])
    }


def test_every_custom_resource_waits_for_its_function_and_that_functions_role_policy(synth):
    checked = 0
    for stack in synth.templates:
        resources = _resources(synth, stack)
        for logical, resource in resources.items():
            if not (resource["Type"].startswith("Custom::") or resource["Type"] == "AWS::CloudFormation::CustomResource"):
                continue
            function = _getatt_target(resource["Properties"]["ServiceToken"])
            assert function in resources, (stack, logical)
            role = _getatt_target(resources[function]["Properties"]["Role"])
            before = _depends_on(resources, logical)
            policies = _role_policies(resources, role) if role else set()
            assert function in before and (role is None or role in before), (stack, logical)
            missing = policies - before
            assert not missing, f"{stack}: {logical} may run before {sorted(missing)} grant its function's actions"
            checked += 1
    assert checked >= 2  # the release guard and the bucket notifications (and the VPC's default-SG one)


def test_every_eventbridge_to_lambda_path_has_an_on_failure_destination_with_an_alarm(synth):
    resources = _resources(synth)
    invoked = {
        _getatt_target(target["Arn"])
        for r in resources.values() if r["Type"] == "AWS::Events::Rule"
        for target in r["Properties"]["Targets"]
    }
    assert invoked == ASYNC_FUNCTIONS
    configs = {
        _getatt_target(r["Properties"]["FunctionName"]): r["Properties"]
        for r in resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"
    }
    assert set(configs) == ASYNC_FUNCTIONS
    alarmed = {
        _getatt_target(d["Value"]) for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
        for d in r["Properties"]["Dimensions"] if d["Name"] == "QueueName"
    }
    for function, config in configs.items():
        destination = _getatt_target(config["DestinationConfig"]["OnFailure"]["Destination"])
        assert resources[destination]["Type"] == "AWS::SQS::Queue", function
        assert destination in alarmed, f"{function}: parked events raise no alarm"
    for rule in (r for r in resources.values() if r["Type"] == "AWS::Events::Rule"):
        for target in rule["Properties"]["Targets"]:
            assert _getatt_target(target["DeadLetterConfig"]["Arn"]) in alarmed
    # Lambda sends to the destination with the function's role.
    runtime_policy = json.dumps([r for r in resources.values() if r["Type"] == "AWS::IAM::Policy"])
    assert "sqs:SendMessage" in runtime_policy


def test_uploads_start_runs_for_manifests_only_in_per_manifest_mode(synth):
    rule = next(r for r in _resources(synth).values()
                if r["Type"] == "AWS::Events::Rule" and "aws.s3" in json.dumps(r))
    assert rule["Properties"]["EventPattern"]["detail"]["object"]["key"] == [{"wildcard": "inbox/*.json"}]


def test_compute_environments_run_amazon_linux_2023_and_carry_no_version_tag(synth):
    resources = _resources(synth, "Conveyor-Compute")
    images = {}
    for logical, resource in resources.items():
        if resource["Type"] in ("AWS::Batch::ComputeEnvironment", "AWS::Batch::JobQueue"):
            props = resource["Properties"]
            assert "conveyor:version" not in json.dumps(props.get("Tags", {})), logical
            assert "conveyor:version" not in json.dumps(props.get("ComputeResources", {})), logical
        if resource["Type"] == "AWS::Batch::ComputeEnvironment":
            images[logical] = [c["ImageType"] for c in resource["Properties"]["ComputeResources"]["Ec2Configuration"]]
    assert sorted(images.values()) == [["ECS_AL2023"], ["ECS_AL2023"], ["ECS_AL2023_NVIDIA"]]


def test_state_machine_logs_go_to_a_vended_log_group(synth):
    groups = [r["Properties"] for r in _resources(synth).values() if r["Type"] == "AWS::Logs::LogGroup"]
    machine = next(r["Properties"] for r in _resources(synth).values() if r["Type"] == "AWS::StepFunctions::StateMachine")
    destination = json.dumps(machine["LoggingConfiguration"]["Destinations"])
    group = next(k for k, r in _resources(synth).items() if r["Type"] == "AWS::Logs::LogGroup" and k in destination)
    assert _resources(synth)[group]["Properties"]["LogGroupName"] == "/aws/vendedlogs/states/conveyor-infra-test"
    assert groups


def test_access_logs_are_delivered_by_bucket_policy_not_acls(synth):
    resources = _resources(synth)
    buckets = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert not [k for k, b in buckets.items() if "AccessControl" in b]
    logs = next(k for k, b in buckets.items() if "LoggingConfiguration" not in b)
    assert buckets[logs]["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    policy = next(r["Properties"]["PolicyDocument"] for r in resources.values()
                  if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": logs})
    assert any(s.get("Principal") == {"Service": "logging.s3.amazonaws.com"} and "s3:PutObject" in json.dumps(s)
               for s in policy["Statement"])


def test_the_job_role_may_delete_objects_publishing_replaces(synth):
    resources = _resources(synth)
    job_role = next(k for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"
                    and "ecs-tasks.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"]))
    statements = [s for p in _role_policies(resources, job_role)
                  for s in resources[p]["Properties"]["PolicyDocument"]["Statement"]]
    assert any("s3:DeleteObject" in json.dumps(s["Action"]) for s in statements)
