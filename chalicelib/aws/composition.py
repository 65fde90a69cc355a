"""AWS composition root: wires the pipeline core to DynamoDB, S3, Batch, Step Functions and EventBridge for the handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from botocore.exceptions import ClientError

from chalicelib import aws_clients as aws
from chalicelib.aws.publisher import EventBridgePublisher
from chalicelib.aws.runstore import DynamoRunStore
from chalicelib.aws.starter import SfnRunStarter
from chalicelib.objectstores import open_store
from chalicelib.observability import logger
from chalicelib.pipeline.joins import manifest_join_items
from chalicelib.pipeline.objectstore import ObjectStore, join_uri
from chalicelib.pipeline.payloads import definition_name
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.run_end import STAGE_FAILED, wait_verdict
from chalicelib.pipeline.runcontext import from_record
from chalicelib.pipeline.runs import RunPorts, epoch_ms
from chalicelib.pipeline.spec import parse_document
from chalicelib.pipeline.tracker import Resume, Tracker
from chalicelib.settings import Settings, get_settings

INPUT_SCHEMA = json.loads((Path(__file__).with_name("pipeline_input.schema.json")).read_text())
BASE_DIR = "/tmp"
GONE_TOKEN_CODES = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken"})


class InputError(ValueError):
    """The execution input does not match pipeline_input.schema.json; names the field."""


@dataclass
class AwsRuntime:
    """Every AWS-side port of one Lambda container, built once from the settings."""

    settings: Settings
    store: DynamoRunStore
    batch: Any
    sfn: Any
    publisher: EventBridgePublisher
    s3: Any

    def objects(self, root: str) -> ObjectStore:
        return open_store(root, s3_client=self.s3)

    def ports(self) -> RunPorts:
        return RunPorts(
            batch=self.batch, store=self.store, publisher=self.publisher,
            queues=self.settings.job_queues, objects=self.objects, clock=epoch_ms,
            definitions=self.settings.job_definitions,
        )

    def tracker(self) -> Tracker:
        return Tracker(store=self.store, batch=self.batch, publisher=self.publisher,
                       join_items=manifest_join_items(self.objects(f"s3://{self.settings.bucket}")), clock=epoch_ms)

    def starter(self) -> SfnRunStarter:
        return SfnRunStarter(self.settings.state_machine_arn, client=self.sfn)

    def runs_prefix(self) -> str:
        return join_uri(f"s3://{self.settings.bucket}", self.settings.runs_prefix.strip("/"))

    def resume(self, wait: Resume) -> None:
        """SendTaskSuccess, or SendTaskFailure(StageFailed) when the core's verdict fails the wait."""
        run = self.store.get_run(wait.run_id)
        if run is None:
            return
        verdict = wait_verdict(from_record(run).spec, self.store, wait.run_id, wait.result)
        try:
            if verdict.failed:
                self.sfn.send_task_failure(taskToken=wait.token, error=STAGE_FAILED, cause=verdict.cause)
            else:
                self.sfn.send_task_success(taskToken=wait.token, output=json.dumps(verdict.output))
        except ClientError as err:
            # A used or expired token: another writer already resumed it, or the wait timed out.
            if err.response.get("Error", {}).get("Code") not in GONE_TOKEN_CODES:
                raise
            logger.info("wait already resumed", extra={"runId": wait.run_id, "stage": wait.stage})


_RUNTIME: list[AwsRuntime] = []


def runtime() -> AwsRuntime:
    """The container's runtime, built on first use (Lambda reuses containers, so clients are built once)."""
    if not _RUNTIME:
        _RUNTIME.append(build_runtime())
    return _RUNTIME[0]


def use_runtime(rt: AwsRuntime | None) -> None:
    """Replaces the container's runtime (composition roots and tests inject their own ports); None resets."""
    _RUNTIME.clear()
    if rt is not None:
        _RUNTIME.append(rt)


def build_runtime() -> AwsRuntime:
    """Every port from the environment the stack set (see chalicelib.settings).

    Raises:
        SettingsError: a variable the stack always sets is missing (names each one).
    """
    settings = get_settings()
    settings.require("table", "bucket", "state_machine_arn", "spec_uri")
    return AwsRuntime(
        settings=settings,
        store=DynamoRunStore(settings.table, client=aws.client("dynamodb")),
        batch=aws.client("batch"),
        sfn=aws.client("stepfunctions"),
        publisher=EventBridgePublisher(settings.event_bus, client=aws.client("events")),
        s3=aws.client("s3"),
    )


def deployed_document(document: dict[str, Any]) -> dict[str, Any]:
    """The spec as deployed: ``build:`` folders became the job definitions CDK created.

    There are no build folders on Lambda, and the image is fixed by the job definition
    (pinned by digest), so each built stage names its definition instead.
    """
    name = str(document.get("name", ""))
    stages = []
    for stage in document.get("stages", []):
        stage = dict(stage)
        if "build" in stage:
            del stage["build"]
            stage["image"] = f"job-definition:{definition_name(name, str(stage.get('name', '')))}"
        stages.append(stage)
    return {**document, "stages": stages}


def load_document(rt: AwsRuntime) -> dict[str, Any]:
    """The deployed spec document (the stack uploads the spec file as an S3 asset)."""
    uri = rt.settings.spec_uri
    bucket_root = "s3://" + uri[len("s3://"):].split("/", 1)[0]
    document = parse_document(rt.objects(bucket_root).get_bytes(uri).decode("utf-8"))
    return deployed_document(document)


def validate_input(payload: Any) -> dict[str, Any]:
    """Checks an execution input against the documented schema.

    Raises:
        InputError: names the first offending field and what was expected.
    """
    errors = sorted(jsonschema.Draft202012Validator(INPUT_SCHEMA).iter_errors(payload), key=lambda e: e.json_path)
    if errors:
        first = errors[0]
        raise InputError(f"{first.json_path}: {first.message[:200]}")
    return dict(payload)


def run_request(rt: AwsRuntime, payload: dict[str, Any], execution: str, document: dict[str, Any]) -> RunRequest:
    run_id = str(payload.get("runId") or execution)
    return RunRequest(
        run_id=run_id, spec=document, items_source=str(payload.get("items", "")),
        prefix=str(payload.get("prefix") or join_uri(rt.runs_prefix(), run_id)),
        source=str(payload.get("source", "console")), parent_run_id=payload.get("parentRunId"),
        base_dir=BASE_DIR,
    )
