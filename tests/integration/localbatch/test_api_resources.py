"""Compute environments, job queues, job definitions and tags through boto3 over loopback HTTP."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import LiveEngine, register


def client_error(call, **kwargs) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    error = info.value.response["Error"]
    assert error["Code"] == "ClientException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Message"]


def test_fresh_data_dir_has_local_environment_and_default_queue(live: LiveEngine) -> None:
    ces = live.batch.describe_compute_environments()["computeEnvironments"]
    assert [ce["computeEnvironmentName"] for ce in ces] == ["local"]
    assert ces[0]["state"] == "ENABLED" and ces[0]["status"] == "VALID"
    assert ces[0]["computeResources"]["maxvCpus"] == 2
    queues = live.batch.describe_job_queues()["jobQueues"]
    assert [q["jobQueueName"] for q in queues] == ["default"]
    assert queues[0]["computeEnvironmentOrder"][0]["computeEnvironment"] == ces[0]["computeEnvironmentArn"]


def test_compute_environment_lifecycle(live: LiveEngine) -> None:
    batch = live.batch
    created = batch.create_compute_environment(
        computeEnvironmentName="spotty", type="MANAGED", tags={"team": "a"},
        computeResources={"type": "SPOT", "maxvCpus": 1, "minvCpus": 0, "subnets": ["s"], "instanceRole": "r"})
    assert created["computeEnvironmentArn"].endswith(":compute-environment/spotty")
    assert "already exists" in client_error(batch.create_compute_environment, computeEnvironmentName="spotty",
                                            type="MANAGED", computeResources={"type": "EC2", "maxvCpus": 1,
                                                                              "subnets": []})
    batch.update_compute_environment(computeEnvironment="spotty", computeResources={"maxvCpus": 4})
    ce = batch.describe_compute_environments(computeEnvironments=[created["computeEnvironmentArn"]])
    assert ce["computeEnvironments"][0]["computeResources"]["maxvCpus"] == 4
    assert "must be DISABLED" in client_error(batch.delete_compute_environment, computeEnvironment="spotty")
    batch.create_job_queue(jobQueueName="uses-spotty", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "spotty"}])
    batch.update_compute_environment(computeEnvironment="spotty", state="DISABLED")
    assert "still used by job queue" in client_error(batch.delete_compute_environment, computeEnvironment="spotty")
    batch.update_job_queue(jobQueue="uses-spotty", state="DISABLED")
    batch.delete_job_queue(jobQueue="uses-spotty")
    batch.delete_compute_environment(computeEnvironment="spotty")
    names = [c["computeEnvironmentName"] for c in batch.describe_compute_environments()["computeEnvironments"]]
    assert names == ["local"]
    assert "does not exist" in client_error(batch.update_compute_environment, computeEnvironment="spotty",
                                            state="ENABLED")


def test_job_queue_lifecycle(live: LiveEngine) -> None:
    batch = live.batch
    batch.create_job_queue(jobQueueName="q1", priority=5, state="ENABLED",
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}])
    batch.update_job_queue(jobQueue="q1", priority=9)
    queue = batch.describe_job_queues(jobQueues=["q1"])["jobQueues"][0]
    assert (queue["priority"], queue["state"], queue["status"]) == (9, "ENABLED", "VALID")
    jd = register(batch, "idle", ["sleep", "30"])
    running = live.submit("r", jd, jobQueue="q1")
    batch.update_job_queue(jobQueue="q1", state="DISABLED")
    assert "DISABLED" in client_error(batch.submit_job, jobName="x", jobQueue="q1", jobDefinition=jd)
    assert "must be DISABLED" in client_error(batch.delete_job_queue, jobQueue="default")
    batch.delete_job_queue(jobQueue="q1")
    assert [q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]] == ["default"]
    # Jobs still in a deleted queue are terminated (they stay describable).
    detail = wait_for_status(batch, running, "FAILED")
    assert detail["isTerminated"] is True
    assert detail["statusReason"] == "The job queue was deleted"
    assert "at most 3" in client_error(batch.create_job_queue, jobQueueName="many", priority=1,
                                       computeEnvironmentOrder=[{"order": i, "computeEnvironment": "local"}
                                                                for i in range(4)])
    assert "computeEnvironmentOrder[0].computeEnvironment" in client_error(
        batch.create_job_queue, jobQueueName="ghost", priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "nope"}])


def test_job_definition_revisions_filters_and_pagination(live: LiveEngine) -> None:
    batch = live.batch
    arns_ = [register(batch, "alpha", ["true"]) for _ in range(3)]
    assert [a.rsplit(":", 1)[1] for a in arns_] == ["1", "2", "3"]
    register(batch, "beta", ["true"])
    batch.deregister_job_definition(jobDefinition="alpha:3")
    every = batch.describe_job_definitions()["jobDefinitions"]
    assert len(every) == 4
    alpha = batch.describe_job_definitions(jobDefinitionName="alpha")["jobDefinitions"]
    assert sorted(d["revision"] for d in alpha) == [1, 2, 3]
    active = batch.describe_job_definitions(jobDefinitionName="alpha", status="ACTIVE")["jobDefinitions"]
    assert sorted(d["revision"] for d in active) == [1, 2]
    inactive = batch.describe_job_definitions(status="INACTIVE")["jobDefinitions"]
    assert [(d["jobDefinitionName"], d["revision"]) for d in inactive] == [("alpha", 3)]
    by_ref = batch.describe_job_definitions(jobDefinitions=["alpha:2", arns_[0]])["jobDefinitions"]
    assert sorted(d["revision"] for d in by_ref) == [1, 2]
    pages, token, seen = 0, None, []
    while True:
        kwargs = {"maxResults": 3, **({"nextToken": token} if token else {})}
        page = batch.describe_job_definitions(**kwargs)
        seen += [(d["jobDefinitionName"], d["revision"]) for d in page["jobDefinitions"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 2 and len(set(seen)) == 4
    paginated = [d for p in batch.get_paginator("describe_job_definitions").paginate(
        PaginationConfig={"PageSize": 1}) for d in p["jobDefinitions"]]
    assert len(paginated) == 4
    # A bare name submits the latest ACTIVE revision (3 is INACTIVE).
    job = live.submit("j", "alpha")
    assert batch.describe_jobs(jobs=[job])["jobs"][0]["jobDefinition"].endswith("alpha:2")
    assert "INACTIVE" in client_error(batch.submit_job, jobName="j", jobQueue="default", jobDefinition="alpha:3")
    assert "nextToken" in client_error(batch.describe_job_definitions, nextToken="garbage")


def test_tags_on_every_resource_kind(live: LiveEngine) -> None:
    batch = live.batch
    jd = register(batch, "tagged", ["true"], tags={"a": "1"})
    job_arn = batch.submit_job(jobName="t", jobQueue="default", jobDefinition=jd, tags={"j": "1"})["jobArn"]
    queue_arn = batch.describe_job_queues()["jobQueues"][0]["jobQueueArn"]
    ce_arn = batch.describe_compute_environments()["computeEnvironments"][0]["computeEnvironmentArn"]
    for arn, initial in ((jd, {"a": "1"}), (job_arn, {"j": "1"}), (queue_arn, {}), (ce_arn, {})):
        assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == initial
        batch.tag_resource(resourceArn=arn, tags={"x": "y", "z": "w"})
        batch.untag_resource(resourceArn=arn, tagKeys=["z"])
        assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {**initial, "x": "y"}
    job_id = job_arn.rsplit("/", 1)[1]
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["tags"] == {"j": "1", "x": "y"}
    assert "at most 50" in client_error(batch.tag_resource, resourceArn=queue_arn,
                                        tags={f"k{i}": "v" for i in range(50)})
    assert "does not exist" in client_error(
        batch.list_tags_for_resource, resourceArn="arn:aws:batch:us-east-1:000000000000:job-queue/nope")


def test_at_most_50_queues_and_50_environments(live: LiveEngine) -> None:
    batch = live.batch
    order = [{"order": 1, "computeEnvironment": "local"}]
    for i in range(49):  # `default` is the 50th
        batch.create_job_queue(jobQueueName=f"q{i}", priority=1, computeEnvironmentOrder=order)
    assert "at most 50 job queues" in client_error(batch.create_job_queue, jobQueueName="one-more", priority=1,
                                                   computeEnvironmentOrder=order)
    for i in range(49):  # `local` is the 50th
        batch.create_compute_environment(computeEnvironmentName=f"ce{i}", type="UNMANAGED")
    assert "at most 50 compute environments" in client_error(
        batch.create_compute_environment, computeEnvironmentName="one-more", type="UNMANAGED")
    page = batch.describe_job_queues(maxResults=20)
    assert len(page["jobQueues"]) == 20 and page["nextToken"]
    every = [q for p in batch.get_paginator("describe_job_queues").paginate(PaginationConfig={"PageSize": 20})
             for q in p["jobQueues"]]
    assert len(every) == 50
    ces = [c for p in batch.get_paginator("describe_compute_environments").paginate()
           for c in p["computeEnvironments"]]
    assert len(ces) == 50


def test_array_children_cannot_be_tagged_their_array_can(live: LiveEngine) -> None:
    batch = live.batch
    jd = register(batch, "tag-array", ["true"])
    array_arn = batch.submit_job(jobName="a", jobQueue="default", jobDefinition=jd, tags={"j": "1"},
                                 arrayProperties={"size": 2})["jobArn"]
    child_arn = f"{array_arn}:1"
    wait_until(lambda: batch.describe_jobs(jobs=[child_arn.rsplit("/", 1)[1]])["jobs"], what="the child to exist")
    for call, extra in ((batch.tag_resource, {"tags": {"x": "y"}}), (batch.untag_resource, {"tagKeys": ["j"]}),
                        (batch.list_tags_for_resource, {})):
        message = client_error(call, resourceArn=child_arn, **extra)
        assert "child of an array job" in message and array_arn in message
    assert batch.list_tags_for_resource(resourceArn=array_arn)["tags"] == {"j": "1"}  # untouched
    batch.tag_resource(resourceArn=array_arn, tags={"x": "y"})
    assert batch.list_tags_for_resource(resourceArn=array_arn)["tags"] == {"j": "1", "x": "y"}
