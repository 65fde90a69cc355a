"""Step Functions run starter: StartExecution named after the run id, so a duplicate start starts nothing."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.pipeline.ports import RunRequest


class SfnRunStarter:
    """RunStarter that starts one execution of the pipeline's state machine per run.

    The execution name is the run id (<= 80 chars, ``[A-Za-z0-9_-]``): Step Functions
    refuses a second execution with the same name for 90 days, which makes duplicate S3
    deliveries and API retries harmless. The spec is not passed: the state machine's Plan
    task reads the spec the stack deployed.
    """

    def __init__(self, state_machine_arn: str, *, client: Any) -> None:
        self._arn = state_machine_arn
        self._sfn = client

    def start_run(self, request: RunRequest) -> str:
        payload: dict[str, Any] = {"runId": request.run_id, "prefix": request.prefix}
        if request.items_source:
            payload["items"] = request.items_source
        if request.source:
            payload["source"] = request.source[:1024]
        if request.parent_run_id:
            payload["parentRunId"] = request.parent_run_id
        try:
            self._sfn.start_execution(stateMachineArn=self._arn, name=request.run_id, input=json.dumps(payload))
        except ClientError as err:
            # Same name, other input (e.g. a re-delivered event with a new timestamp): the run exists.
            if err.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
        return request.run_id
