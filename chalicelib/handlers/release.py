"""Blueprint: the `release` Lambda behind each pipeline stack's Custom::ConveyorRelease resource."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from chalice.app import Blueprint

from chalicelib import aws_clients as aws
from chalicelib.aws.release import handle_release_event
from chalicelib.observability import logger

blueprint = Blueprint(__name__)


def _stack_status(stack_id: str) -> str:
    stacks = aws.client("cloudformation").describe_stacks(StackName=stack_id)["Stacks"]
    return str(stacks[0]["StackStatus"]) if stacks else ""


def _respond(event: dict[str, Any], status: str, physical_id: str, data: dict[str, str], reason: str) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": physical_id,
            "StackId": event.get("StackId"),
            "RequestId": event.get("RequestId"),
            "LogicalResourceId": event.get("LogicalResourceId"),
            "Data": data,
        }
    ).encode()
    # The pre-signed S3 URL CloudFormation waits on; an empty content type is what it signs.
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


@blueprint.lambda_function(name="release")
def release(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """CloudFormation custom resource: version guard, image version tags, digests."""
    physical_id = event.get("PhysicalResourceId") or "conveyor-release"
    try:
        physical_id, data = handle_release_event(event, ecr=aws.client("ecr"), stack_status=_stack_status)
    except Exception as err:
        logger.exception("release refused or failed")
        _respond(event, "FAILED", physical_id, {}, str(err))
        return {"Status": "FAILED", "Reason": str(err)}
    _respond(event, "SUCCESS", physical_id, data, "ok")
    return {"Status": "SUCCESS", "Data": data}
