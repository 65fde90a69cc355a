"""SubmitJob, DescribeJobs, ListJobs, CancelJob, TerminateJob through boto3 over loopback HTTP."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import LiveEngine, register


@pytest.fixture
def jds(live: LiveEngine) -> dict[str, str]:
    return {"idle": register(live.batch, "idle", ["sleep", "30"]), "quick": register(live.batch, "quick", ["true"])}


def list_all(batch, **kwargs) -> list[dict]:
    return [s for page in batch.get_paginator("list_jobs").paginate(**kwargs) for s in page["jobSummaryList"]]


def test_submit_describe_and_finish(live: LiveEngine, jds: dict[str, str]) -> None:
    response = live.batch.submit_job(jobName="hello", jobQueue="default", jobDefinition="quick",
                                     parameters={"p": "v"}, tags={"k": "v"})
    assert set(response) >= {"jobArn", "jobName", "jobId"}
    assert response["jobArn"].endswith(f":job/{response['jobId']}")
    detail = wait_for_status(live.batch, response["jobId"], "SUCCEEDED")
    assert detail["jobName"] == "hello"
    assert detail["jobQueue"].endswith(":job-queue/default")
    assert detail["jobDefinition"] == jds["quick"]
    assert detail["parameters"] == {"p": "v"} and detail["tags"] == {"k": "v"}
    assert detail["container"]["exitCode"] == 0
    assert isinstance(detail["createdAt"], int) and detail["stoppedAt"] >= detail["startedAt"]
    attempt = detail["attempts"][0]
    assert attempt["statusReason"] == "Essential container in task exited"
    assert attempt["container"]["logStreamName"].startswith("quick/default/")
    assert live.batch.describe_jobs(jobs=["not-a-job"])["jobs"] == []


def test_list_jobs_default_is_running_only(live: LiveEngine, jds: dict[str, str]) -> None:
    idle = [live.submit(f"idle{i}", "idle") for i in range(3)]  # 2 run, 1 waits (2 vCPUs)
    done = live.submit("done", "quick", dependsOn=[{"jobId": idle[0]}])
    wait_until(lambda: len(live.batch.list_jobs(jobQueue="default")["jobSummaryList"]) == 2, what="2 running")
    running = {s["jobId"] for s in live.batch.list_jobs(jobQueue="default")["jobSummaryList"]}
    assert running == set(idle[:2])
    runnable = live.batch.list_jobs(jobQueue="default", jobStatus="RUNNABLE")["jobSummaryList"]
    assert [s["jobId"] for s in runnable] == [idle[2]]
    pending = live.batch.list_jobs(jobQueue="default", jobStatus="PENDING")["jobSummaryList"]
    assert [s["jobId"] for s in pending] == [done]
    summary = runnable[0]
    assert set(summary) >= {"jobArn", "jobId", "jobName", "createdAt", "status", "jobDefinition"}
    for job in idle:
        live.batch.terminate_job(jobId=job, reason="cleanup")


def test_list_jobs_filters(live: LiveEngine, jds: dict[str, str]) -> None:
    first = live.submit("Alpha-one", "quick")
    wait_for_status(live.batch, first, "SUCCEEDED")
    moment = live.batch.describe_jobs(jobs=[first])["jobs"][0]["createdAt"]
    wait_until(lambda: live.engine.scheduler.now() > moment, what="the clock to move")
    second = live.submit("alpha-two", "idle")
    third = live.submit("beta", "quick")
    arr = live.submit("alpha-arr", "quick", arrayProperties={"size": 2})

    def names(name: str, value: str) -> list[str]:
        return [s["jobName"] for s in list_all(live.batch, jobQueue="default",
                                                filters=[{"name": name, "values": [value]}])]
    assert names("JOB_NAME", "ALPHA*") == ["alpha-arr", "alpha-two", "Alpha-one"]  # newest first, no children
    assert names("JOB_NAME", "beta") == ["beta"]
    assert sorted(names("JOB_DEFINITION", "quick")) == ["Alpha-one", "alpha-arr", "beta"]
    assert names("JOB_DEFINITION", jds["idle"]) == ["alpha-two"]
    assert names("JOB_DEFINITION", "qu*") == ["alpha-arr", "beta", "Alpha-one"]
    assert "Alpha-one" not in names("AFTER_CREATED_AT", str(moment))
    assert names("BEFORE_CREATED_AT", str(moment + 1)) == ["Alpha-one"]
    # With filters, jobStatus is ignored: every status comes back.
    statuses = {s["status"] for s in live.batch.list_jobs(jobQueue="default", jobStatus="RUNNING",
                                                          filters=[{"name": "JOB_NAME", "values": ["*"]}])
                ["jobSummaryList"]}
    assert "SUCCEEDED" in statuses
    live.batch.terminate_job(jobId=second, reason="cleanup")
    for job in (third, arr):
        wait_for_status(live.batch, job)


def test_list_jobs_array_children_and_pagination(live: LiveEngine, jds: dict[str, str]) -> None:
    arr = live.submit("arr", "quick", arrayProperties={"size": 7})
    wait_for_status(live.batch, arr, "SUCCEEDED")
    assert live.batch.list_jobs(arrayJobId=arr)["jobSummaryList"] == []  # default: RUNNING only
    first = live.batch.list_jobs(arrayJobId=arr, jobStatus="SUCCEEDED", maxResults=3)
    assert len(first["jobSummaryList"]) == 3 and first["nextToken"]
    children = list_all(live.batch, arrayJobId=arr, jobStatus="SUCCEEDED", PaginationConfig={"PageSize": 3})
    assert sorted(s["arrayProperties"]["index"] for s in children) == list(range(7))
    assert {s["jobId"] for s in children} == {f"{arr}:{i}" for i in range(7)}
    parent = live.batch.list_jobs(jobQueue="default", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [s["jobId"] for s in parent] == [arr]  # children are not listed by queue
    assert parent[0]["arrayProperties"]["size"] == 7


@pytest.mark.parametrize(("kwargs", "field"), [
    ({}, "ListJobs"),
    ({"jobQueue": "default", "arrayJobId": "x"}, "ListJobs"),
    ({"jobQueue": "nope"}, "jobQueue"),
    ({"arrayJobId": "nope"}, "arrayJobId"),
    ({"jobQueue": "default", "maxResults": 1001}, "maxResults"),
    ({"jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": ["a"]}], "maxResults": 101},
     "maxResults"),
    ({"jobQueue": "default", "filters": [{"name": "AFTER_CREATED_AT", "values": ["yesterday"]}]},
     "filters[0].values[0]"),
    ({"jobQueue": "default", "nextToken": "bogus"}, "nextToken"),
])
def test_list_jobs_bad_requests(live: LiveEngine, kwargs: dict, field: str) -> None:
    with pytest.raises(ClientError) as info:
        live.batch.list_jobs(**kwargs)
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert field in info.value.response["Error"]["Message"]


def test_cancel_and_terminate_over_http(live: LiveEngine, jds: dict[str, str]) -> None:
    running = live.submit("run", "idle")
    wait_for_status(live.batch, running, "RUNNING")
    assert live.batch.cancel_job(jobId=running, reason="no-op while running")["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    assert live.batch.describe_jobs(jobs=[running])["jobs"][0]["status"] == "RUNNING"
    pending = live.submit("pend", "quick", dependsOn=[{"jobId": running}])
    wait_for_status(live.batch, pending, "PENDING")  # a job still SUBMITTED would fail at once
    live.batch.cancel_job(jobId=pending, reason="cancel pending")
    assert live.batch.describe_jobs(jobs=[pending])["jobs"][0]["status"] == "PENDING"  # until deps complete
    live.batch.terminate_job(jobId=running, reason="stop now")
    detail = wait_for_status(live.batch, running, "FAILED")
    assert detail["statusReason"] == "stop now" and detail["isTerminated"] is True
    detail = wait_for_status(live.batch, pending, "FAILED")
    assert detail["statusReason"] == "cancel pending" and detail["isCancelled"] is True
    assert detail["attempts"] == []


def test_share_identifier_filter_on_a_fair_share_queue(live: LiveEngine, jds: dict[str, str]) -> None:
    live.batch.create_job_queue(
        jobQueueName="fair", priority=1,
        schedulingPolicyArn="arn:aws:batch:us-east-1:000000000000:scheduling-policy/fair",
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}])
    a = live.submit("a", "quick", jobQueue="fair", shareIdentifier="teamA")
    b = live.submit("b", "quick", jobQueue="fair", shareIdentifier="teamB")
    with pytest.raises(ClientError) as info:
        live.submit("none", "quick", jobQueue="fair")
    assert "shareIdentifier" in info.value.response["Error"]["Message"]
    for job in (a, b):
        wait_for_status(live.batch, job, "SUCCEEDED")
    found = live.batch.list_jobs(jobQueue="fair", filters=[{"name": "SHARE_IDENTIFIER", "values": ["teamA"]}])
    assert [s["jobId"] for s in found["jobSummaryList"]] == [a]
    assert live.batch.describe_jobs(jobs=[a])["jobs"][0]["shareIdentifier"] == "teamA"
