"""The stream stack's wiring, replayed from the synthesized template into moto: the arrivals rule
delivers an S3 upload's event to the entry queue (and a worker then runs it), the task definition
and service register with ECS, and the scaling target and policies with Application Auto Scaling."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws.stream_worker import WorkerConfig, build_worker
from chalicelib.aws.task_protection import TaskProtection
from tests.integration.stream_aws.test_stream_stack import stream_synth  # noqa: F401 (module fixture)

REGION = "us-east-1"


def _one(template: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, r) for name, r in template["Resources"].items() if r["Type"] == kind]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield {name: boto3.client(name, region_name=REGION)
               for name in ("sqs", "s3", "dynamodb", "events", "ecs", "application-autoscaling")}


def test_an_upload_event_reaches_the_entry_queue_through_the_templates_rule_and_runs(
        stream_synth: tuple[dict[str, Any], Path], aws: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    template, _ = stream_synth
    rules = [r for _, r in _one(template, "AWS::Events::Rule")
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]]
    pattern = json.loads(json.dumps(rules[0]["Properties"]["EventPattern"]).replace(
        json.dumps(rules[0]["Properties"]["EventPattern"]["detail"]["bucket"]["name"][0]), '"uploads"'))
    sqs, s3 = aws["sqs"], aws["s3"]
    s3.create_bucket(Bucket="uploads")
    entry = sqs.create_queue(QueueName="entry")["QueueUrl"]
    entry_arn = sqs.get_queue_attributes(QueueUrl=entry, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws["events"].put_rule(Name="arrivals", EventPattern=json.dumps(pattern))
    aws["events"].put_targets(Rule="arrivals", Targets=[{"Id": "entry", "Arn": entry_arn}])
    s3.put_object(Bucket="uploads", Key="inbox/cat.txt", Body=b"meow")
    detail = {"version": "0", "bucket": {"name": "uploads"}, "object": {"key": "inbox/cat.txt", "size": 4}}
    aws["events"].put_events(Entries=[
        {"Source": "aws.s3", "DetailType": "Object Created", "Detail": json.dumps(detail)},
        {"Source": "aws.s3", "DetailType": "Object Created",  # outside the inbox: not routed
         "Detail": json.dumps({**detail, "object": {"key": "runs/x/y.txt"}})}])

    # The worker configuration exactly as the entry stage's task definition carries it.
    task = next(r for _, r in _one(template, "AWS::ECS::TaskDefinition")
                if '"entry":true' in json.dumps(r["Properties"]).replace(" ", "").replace("\\", ""))
    raw = _worker_config(task)
    dead = sqs.create_queue(QueueName="entry-dlq")["QueueUrl"]
    down = sqs.create_queue(QueueName="next")["QueueUrl"]
    aws["dynamodb"].create_table(
        TableName="items", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
    aws["events"].create_event_bus(Name="bus")
    raw.update({"prefix": "s3://uploads/runs/thumbs-stream", "queueUrl": entry, "deadLetterUrl": dead,
                "downstream": {"meta": down}, "itemsTable": "items", "eventBus": "bus",
                "command": [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                            "{item}", "{out}"]})
    config = WorkerConfig.from_environment({"CONVEYOR_STREAM_WORKER": json.dumps(raw)})
    worker = build_worker(config, {}, sqs=sqs, dynamodb=aws["dynamodb"], events=aws["events"],
                          protection=TaskProtection(None, expires_minutes=2), scratch=tmp_path, wait_seconds=0)
    assert worker.run_once() is True
    assert worker.run_once() is False  # only the inbox upload was routed
    listed = s3.list_objects_v2(Bucket="uploads", Prefix="runs/thumbs-stream/thumb/cat/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[1] for o in listed} >= {"cat.txt", "_SUCCESS"}
    assert json.loads(sqs.receive_message(QueueUrl=down)["Messages"][0]["Body"])["stage"] == "meta"


def _worker_config(task: dict[str, Any]) -> dict[str, Any]:
    env = task["Properties"]["ContainerDefinitions"][0]["Environment"]
    value = next(e["Value"] for e in env if e["Name"] == "CONVEYOR_STREAM_WORKER")
    # Fn::Join of literal JSON text and tokens (queue URLs, names): keep the literal parts, fill tokens.
    parts = value["Fn::Join"][1] if isinstance(value, dict) else [value]
    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)
    return json.loads(text)


def test_the_task_definition_service_and_scaling_register_as_synthesized(
        stream_synth: tuple[dict[str, Any], Path], aws: dict[str, Any]) -> None:  # noqa: F811
    template, _ = stream_synth
    ecs, scaling = aws["ecs"], aws["application-autoscaling"]
    ecs.create_cluster(clusterName="stream", capacityProviders=["FARGATE", "FARGATE_SPOT"])
    for (name, task), (_, service) in zip(_one(template, "AWS::ECS::TaskDefinition"),
                                          _one(template, "AWS::ECS::Service"), strict=True):
        props = task["Properties"]
        container = props["ContainerDefinitions"][0]
        registered = ecs.register_task_definition(
            family=name, requiresCompatibilities=props["RequiresCompatibilities"], networkMode=props["NetworkMode"],
            cpu=props["Cpu"], memory=props["Memory"],
            runtimePlatform={"cpuArchitecture": props["RuntimePlatform"]["CpuArchitecture"],
                             "operatingSystemFamily": props["RuntimePlatform"]["OperatingSystemFamily"]},
            containerDefinitions=[{"name": container["Name"], "image": "repo@sha256:" + "0" * 64,
                                   "command": container["Command"], "essential": True,
                                   "stopTimeout": container["StopTimeout"]}],
        )["taskDefinition"]
        strategy = [{"capacityProvider": s["CapacityProvider"], "weight": s["Weight"], "base": s.get("Base", 0)}
                    for s in service["Properties"]["CapacityProviderStrategy"]]
        breaker = service["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
        created = ecs.create_service(
            cluster="stream", serviceName=name, taskDefinition=registered["taskDefinitionArn"],
            desiredCount=service["Properties"]["DesiredCount"], capacityProviderStrategy=strategy,
            deploymentConfiguration={"deploymentCircuitBreaker": {"enable": breaker["Enable"],
                                                                  "rollback": breaker["Rollback"]}},
        )["service"]
        assert created["desiredCount"] == service["Properties"]["DesiredCount"]
        resource_id = f"service/stream/{name}"
        target = next(r for _, r in _one(template, "AWS::ApplicationAutoScaling::ScalableTarget")
                      if r["Properties"]["MinCapacity"] == service["Properties"]["DesiredCount"])
        scaling.register_scalable_target(ServiceNamespace="ecs", ResourceId=resource_id,
                                         ScalableDimension="ecs:service:DesiredCount",
                                         MinCapacity=target["Properties"]["MinCapacity"],
                                         MaxCapacity=target["Properties"]["MaxCapacity"])
    tracking = next(r for _, r in _one(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
                    if r["Properties"]["PolicyType"] == "TargetTrackingScaling")
    config = tracking["Properties"]["TargetTrackingScalingPolicyConfiguration"]

    def metric(query: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"Id": query["Id"], "ReturnData": query.get("ReturnData", True)}
        if "Expression" in query:
            out["Expression"] = query["Expression"]
        else:
            stat = query["MetricStat"]
            out["MetricStat"] = {"Stat": stat["Stat"], "Metric": {
                "Namespace": stat["Metric"]["Namespace"], "MetricName": stat["Metric"]["MetricName"],
                "Dimensions": [{"Name": d["Name"], "Value": "x"} for d in stat["Metric"]["Dimensions"]]}}
        return out

    # boto3 validates the policy's shape against the service model (metric math queries included).
    answer = scaling.put_scaling_policy(
        PolicyName="backlog", ServiceNamespace="ecs", ResourceId=resource_id,
        ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": config["TargetValue"],
            "CustomizedMetricSpecification": {"Metrics": [metric(q) for q in config["CustomizedMetricSpecification"]["Metrics"]]},
            "ScaleInCooldown": config["ScaleInCooldown"], "ScaleOutCooldown": config["ScaleOutCooldown"]})
    assert answer["PolicyARN"]
    targets = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert sorted((t["MinCapacity"], t["MaxCapacity"]) for t in targets) == [(0, 5), (1, 2)]
