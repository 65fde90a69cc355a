"""Runs statemachines/pipeline.asl.json on moto's Step Functions engine with the real task code.

Only the Lambda transport is canned: moto's docker-less Lambda cannot run our package, so
its ``invoke`` is routed (per test, via monkeypatch) to ``state_machine_tasks.TASKS`` in-process. Plan,
wait, finalize and cleanup are the real functions against moto's S3, DynamoDB, Step
Functions and EventBridge; Submit is a canned reply (no Batch here) that records nothing,
unless a test passes the real tasks and a recording Batch client.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import boto3
from moto.awslambda_simple.models import LambdaSimpleBackend

from chalicelib.aws.composition import AwsRuntime
from chalicelib.aws.publisher import EventBridgePublisher
from chalicelib.aws.runstore import DynamoRunStore
from chalicelib.handlers import state_machine_tasks
from chalicelib.pipeline.records import StageRecord, StageStatus
from chalicelib.pipeline.tracker import Resume
from chalicelib.settings import Settings
from infra.constructs.state_machine import STATE_MACHINES
from tests.integration.handlers.aws_fixtures import create_run_table
from tests.integration.infra.conftest import SPEC

REGION = "us-east-1"
BUCKET = "conveyor-infra-test-data"
BUS = "conveyor-infra-test"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@dataclass
class Harness:
    rt: AwsRuntime
    machine_arn: str
    queue_url: str
    calls: list[str]

    def start(self, run_id: str, items: str) -> str:
        answer = self.rt.sfn.start_execution(
            stateMachineArn=self.machine_arn, name=run_id,
            input=json.dumps({"runId": run_id, "items": items, "source": "test"}),
        )
        return str(answer["executionArn"])

    def wait_for(self, predicate: Callable[[], bool], what: str, deadline_s: float = 60) -> None:
        end = time.monotonic() + deadline_s
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def finished(self, execution_arn: str) -> dict[str, Any]:
        described: dict[str, Any] = {}

        def done() -> bool:
            described.update(self.rt.sfn.describe_execution(executionArn=execution_arn))
            return described["status"] != "RUNNING"

        self.wait_for(done, "the execution to end")
        return described

    def token_stored(self, run_id: str, stage: str) -> bool:
        item = self.rt.store._get(f"RUN#{run_id}", f"WAIT#{stage}")
        return bool(item and "token" in item)

    def end_stage(self, run_id: str, stage: str, status: str, counts: dict[str, int]) -> None:
        """What the tracker does when a stage's jobs end: record the stage, store the result, resume."""
        previous = self.rt.store.get_stage(run_id, stage)
        self.rt.store.put_stage(StageRecord(run_id=run_id, stage=stage, status=StageStatus(status),
                                            items=previous.items if previous else 0, counts=counts))
        outcome = self.rt.store.put_stage_result(run_id, stage, {"stage": stage, "status": status, "counts": counts})
        if outcome.completed and outcome.token and outcome.result is not None:
            self.rt.resume(Resume(run_id, stage, outcome.token, outcome.result))

    def bus_events(self, expected: int) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            for message in sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", []):
                found.append(json.loads(message["Body"]))
            return len(found) >= expected

        self.wait_for(enough, f"{expected} events on the bus", deadline_s=10)
        return found

    def transitions(self, execution_arn: str) -> int:
        events = self.rt.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return sum(1 for e in events if e["type"].endswith("StateEntered"))


def canned_submit(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    return {"runId": event["runId"], "status": "RUNNING"}


def build(monkeypatch: Any, tasks: dict[str, Callable[[AwsRuntime, dict[str, Any]], dict[str, Any]]] | None = None
          ) -> Harness:
    """Creates every resource the stack would, under an active ``mock_aws(config=MOTO_CONFIG)``."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="deploy/pipeline.yaml", Body=SPEC.read_bytes())
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = create_run_table(dynamodb)
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name=BUS)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="bus-reader")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-conveyor", EventBusName=BUS, EventPattern=json.dumps({"source": ["conveyor"]}))
    events.put_targets(Rule="all-conveyor", EventBusName=BUS, Targets=[{"Id": "reader", "Arn": queue_arn}])

    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="conveyor", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def tasks(event, context):\n    return event\n")
    function_arn = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="conveyor-tasks", Runtime="python3.11", Role=role, Handler="app.tasks",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]

    sfn = boto3.client("stepfunctions", region_name=REGION)
    settings = Settings(pipeline="infra-test", table=table, event_bus=BUS, bucket=BUCKET,
                        spec_uri=f"s3://{BUCKET}/deploy/pipeline.yaml",
                        job_queues={"spot": "spot", "on-demand": "on-demand", "gpu": "gpu"},
                        job_definitions={"qc": "conveyor-infra-test-qc", "align": "conveyor-infra-test-align",
                                         "joint": "conveyor-infra-test-joint"})
    rt = AwsRuntime(settings=settings, store=DynamoRunStore(table, client=dynamodb),
                    batch=boto3.client("batch", region_name=REGION), sfn=sfn,
                    publisher=EventBridgePublisher(BUS, client=events), s3=s3)
    calls: list[str] = []
    tasks = tasks or {**state_machine_tasks.TASKS, "submit": canned_submit}

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body)
        calls.append(event["action"])
        return json.dumps(tasks[event["action"]](rt, event)).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    definition = (STATE_MACHINES / "pipeline.asl.json").read_text()
    definition = definition.replace("${TaskFunctionArn}", function_arn).replace("${PipelineName}", "infra-test")
    machine_arn = sfn.create_state_machine(name="conveyor-infra-test", definition=definition, roleArn=role)[
        "stateMachineArn"]
    rt.settings = replace(settings, state_machine_arn=machine_arn)
    return Harness(rt=rt, machine_arn=machine_arn, queue_url=queue_url, calls=calls)


def put_manifest(rt: AwsRuntime, name: str, count: int) -> str:
    """An items manifest of ``count`` paired-read samples; returns its URI."""
    from chalicelib.pipeline.manifest import to_manifest_bytes
    from chalicelib.pipeline.model import Item

    items = [Item(key=f"s{i}", files=(f"s3://{BUCKET}/inbox/s{i}_R1.fastq.gz", f"s3://{BUCKET}/inbox/s{i}_R2.fastq.gz"))
             for i in range(count)]
    rt.s3.put_object(Bucket=BUCKET, Key=f"inbox/{name}.json", Body=to_manifest_bytes(items))
    return f"s3://{BUCKET}/inbox/{name}.json"
