"""The stream stack's deploy-time custom resources: the release guard and the smoke item.

One Lambda (stdlib, boto3 and the dependency-free core modules only: its code is the bare
``chalicelib`` folder) answers CloudFormation for two resource kinds:

* ``release``: the same guard as the batch pipelines (``chalicelib.aws.release``): refuses a
  version older than the deployed one unless forced (a rollback is recognised and allowed),
  tags each image with ``v<version>`` and returns its digest, so task definitions pin
  ``repo@sha256:...``. The services depend on it, so a refused release changes nothing.
* ``smoke``: after the services are updated, uploads a sample under ``inbox/`` and waits
  until the item's outputs are published by every last stage; a dead-lettered or late item
  fails the deployment, and ECS and CloudFormation roll it back.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chalicelib.aws.release import handle_release_event

SUCCESS_MARKER = "_SUCCESS"
POLL_SECONDS = 10
# Leaves a Lambda timeout of 15 minutes room to answer CloudFormation itself.
DEFAULT_WAIT_SECONDS = 12 * 60


class SmokeFailed(RuntimeError):
    """The smoke item did not come out the other end (names the stage and the reason)."""


def smoke_key(inbox_prefix: str, sample_name: str, request_id: str) -> tuple[str, str]:
    """The upload's key and the item key it becomes (the file name without its extension)."""
    stem, dot, extension = sample_name.rpartition(".")
    if not dot:
        stem, extension = sample_name, ""
    item = f"conveyor-smoke-{request_id[:8]}-{stem}"
    return f"{inbox_prefix}{item}{'.' + extension if extension else ''}", item


def run_smoke(props: Mapping[str, Any], request_id: str, *, s3: Any, dynamodb: Any,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
              wait_seconds: float = DEFAULT_WAIT_SECONDS) -> dict[str, str]:
    """Uploads the sample and waits for its outputs.

    Raises:
        SmokeFailed: the item was dead-lettered in a stage, or not published in time.
    """
    bucket, inbox = str(props["Bucket"]), str(props["InboxPrefix"])
    key, item = smoke_key(inbox, str(props["SampleName"]), request_id)
    sample = s3.get_object(Bucket=str(props["SampleBucket"]), Key=str(props["SampleKey"]))["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=sample)
    sinks: Sequence[str] = list(props["SinkStages"])
    run_prefix = str(props["RunPrefix"]).rstrip("/")
    deadline = clock() + wait_seconds
    while True:
        waiting = [s for s in sinks if not _published(s3, bucket, f"{run_prefix}/{s}/{item}/{SUCCESS_MARKER}")]
        if not waiting:
            return {"SmokeItem": item}
        dead = _dead_lettered(dynamodb, str(props["ItemsTable"]), str(props["RunId"]), item)
        if dead:
            raise SmokeFailed(f"smoke item {item!r} was dead-lettered in stage {dead[0]!r}: {dead[1]}")
        if clock() >= deadline:
            raise SmokeFailed(f"smoke item {item!r} was not published by {', '.join(waiting)} "
                              f"within {int(wait_seconds)} s")
        sleep(POLL_SECONDS)


def _published(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _dead_lettered(dynamodb: Any, table: str, run_id: str, item: str) -> tuple[str, str] | None:
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": run_id}})
    for page in pages:
        for raw in page.get("Items", []):
            if raw.get("itemKey", {}).get("S") == item and raw.get("status", {}).get("S") == "DEAD_LETTERED":
                return raw["stage"]["S"], raw.get("reason", {}).get("S", "")
    return None


def handle(event: Mapping[str, Any], clients: Callable[[str], Any]) -> tuple[str, dict[str, str]]:
    """``(physical id, data)`` for one custom-resource event; raises to fail it."""
    props = event.get("ResourceProperties", {})
    kind = props.get("Kind")
    if kind == "release":
        def stack_status(stack_id: str) -> str:
            stacks = clients("cloudformation").describe_stacks(StackName=stack_id)["Stacks"]
            return str(stacks[0]["StackStatus"]) if stacks else ""

        return handle_release_event(event, ecr=clients("ecr"), stack_status=stack_status)
    if kind == "smoke":
        physical_id = str(event.get("PhysicalResourceId") or f"conveyor-smoke-{props.get('Pipeline', '')}")
        if event.get("RequestType") == "Delete":
            return physical_id, {}
        return physical_id, run_smoke(props, str(event.get("RequestId", "0" * 8)), s3=clients("s3"),
                                      dynamodb=clients("dynamodb"))
    raise ValueError(f"unknown custom resource kind {kind!r} (expected 'release' or 'smoke')")


def respond(event: Mapping[str, Any], status: str, physical_id: str, data: Mapping[str, str], reason: str) -> None:
    body = json.dumps({"Status": status, "Reason": reason[:1000], "PhysicalResourceId": physical_id,
                       "StackId": event.get("StackId"), "RequestId": event.get("RequestId"),
                       "LogicalResourceId": event.get("LogicalResourceId"), "Data": dict(data)}).encode()
    # The pre-signed S3 URL CloudFormation waits on; an empty content type is what it signs.
    request = urllib.request.Request(str(event["ResponseURL"]), data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """The Lambda entry point: always answers CloudFormation, so a failure never hangs a deploy."""
    import boto3  # the Lambda runtime provides it; imported here so tests can drive handle() alone

    region = os.environ.get("AWS_REGION")
    physical_id = str(event.get("PhysicalResourceId") or "conveyor-stream-deploy")
    try:
        physical_id, data = handle(event, lambda name: boto3.client(name, region_name=region))
    except Exception as err:  # the process edge: report the failure to CloudFormation
        print(f"custom resource failed: {type(err).__name__}: {err}")
        respond(event, "FAILED", physical_id, {}, f"{type(err).__name__}: {err}")
        return {"Status": "FAILED"}
    respond(event, "SUCCESS", physical_id, data, "ok")
    return {"Status": "SUCCESS"}
