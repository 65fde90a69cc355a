"""The in-process client answers exactly as boto3 over HTTP does: same dicts, same errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from tests.helpers import wait_for_status
from tests.integration.localbatch.conftest import LiveEngine, register


def strip(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def test_same_answers_in_process_and_over_http(live: LiveEngine) -> None:
    local = live.engine.client()
    register(local, "quick", ["true"])
    job = local.submit_job(jobName="inproc", jobQueue="default", jobDefinition="quick",
                           arrayProperties={"size": 2})["jobId"]
    wait_for_status(local, job, "SUCCEEDED")
    for method, kwargs in (
        ("describe_jobs", {"jobs": [job, f"{job}:1"]}),
        ("list_jobs", {"arrayJobId": job, "jobStatus": "SUCCEEDED"}),
        ("list_jobs", {"jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": ["in*"]}]}),
        ("describe_job_queues", {}),
        ("describe_compute_environments", {}),
        ("describe_job_definitions", {"jobDefinitionName": "quick"}),
    ):
        assert strip(getattr(local, method)(**kwargs)) == strip(getattr(live.batch, method)(**kwargs)), method
    pages = [p["jobSummaryList"] for p in local.get_paginator("list_jobs").paginate(
        arrayJobId=job, jobStatus="SUCCEEDED", PaginationConfig={"PageSize": 1})]
    assert [len(p) for p in pages] == [1, 1]


def test_same_errors_in_process_and_over_http(live: LiveEngine) -> None:
    local = live.engine.client()
    for client in (local, live.batch):
        with pytest.raises(ClientError) as info:
            client.submit_job(jobName="x", jobQueue="nope", jobDefinition="nope")
        assert info.value.response["Error"]["Code"] == "ClientException"
        assert info.value.response["Error"]["Message"].startswith("jobQueue:")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        with pytest.raises(ParamValidationError):  # checked client-side against botocore's model
            client.submit_job(jobName=5, jobQueue="default", jobDefinition="x")
