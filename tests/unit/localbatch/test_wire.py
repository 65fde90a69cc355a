"""Wire shapes: JobDetail JSON, event envelopes rebuilt from snapshots, summaries, resources."""

from __future__ import annotations

import json

from chalicelib.localbatch import arns, wire
from chalicelib.localbatch.model import (
    ComputeEnvironment,
    Job,
    JobDefinition,
    JobQueue,
    JobStatus,
    Resources,
    Submission,
)


def submission(array_size: int | None = None) -> Submission:
    return Submission(
        job_id="11111111-2222-3333-4444-555555555555", seq=1, name="job", queue="default",
        job_definition=arns.job_definition_arn("jd", 3),
        container={"image": "busybox", "command": ["echo", "hi"],
                   "resourceRequirements": [{"type": "VCPU", "value": "1"}]},
        resources=Resources(1.0, 64), parameters={"p": "v"},
        retry_strategy={"attempts": 2, "evaluateOnExit": []}, timeout_seconds=120, depends_on=[],
        array_size=array_size, tags={"k": "v"}, propagate_tags=False, scheduling_priority=None,
        share_identifier=None, created_at=1_700_000_000_000)


def test_detail_is_valid_json_with_batch_fields() -> None:
    sub = submission()
    job = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.RUNNING, created_at=sub.created_at,
              started_at=sub.created_at + 5, log_stream="jd/default/abc", status_reason=None)
    detail = json.loads(wire.detail_json(job))
    assert detail["jobArn"] == arns.job_arn(sub.job_id)
    assert detail["jobQueue"] == arns.queue_arn("default")
    assert detail["jobDefinition"].endswith(":job-definition/jd:3")
    assert detail["status"] == "RUNNING"
    assert detail["startedAt"] == sub.created_at + 5
    assert "stoppedAt" not in detail and "statusReason" not in detail
    assert detail["container"]["command"] == ["echo", "hi"]
    assert detail["container"]["logStreamName"] == "jd/default/abc"
    assert detail["retryStrategy"] == {"attempts": 2, "evaluateOnExit": []}
    assert detail["timeout"] == {"attemptDurationSeconds": 120}
    assert detail["parameters"] == {"p": "v"} and detail["tags"] == {"k": "v"}
    assert detail["isCancelled"] is False and detail["isTerminated"] is False
    assert "arrayProperties" not in detail


def test_event_rebuilt_from_snapshot_equals_detail_at_that_moment() -> None:
    sub = submission(array_size=2)
    parent = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.PENDING, created_at=sub.created_at)
    child = Job(job_id=f"{sub.job_id}:1", sub=sub, index=1, status=JobStatus.FAILED, created_at=sub.created_at,
                parent=parent, status_reason="Essential container in task exited", exit_code=3,
                stopped_at=sub.created_at + 9)
    snapshot = wire.snapshot_json(child)
    expected = json.loads(wire.detail_json(child))
    child.status = JobStatus.RUNNABLE  # later changes do not leak into the stored event
    envelope = json.loads(wire.render_event("ab" * 16, 42, child.job_id, sub.created_at + 9, snapshot, sub))
    assert envelope["detail-type"] == "Batch Job State Change"
    assert envelope["source"] == "aws.batch"
    assert envelope["resources"] == [arns.job_arn(child.job_id)]
    assert envelope["time"].endswith("Z")
    assert envelope["detail"] == expected
    assert envelope["detail"]["arrayProperties"] == {"index": 1}
    again = json.loads(wire.render_event("ab" * 16, 42, child.job_id, 0, snapshot, sub))
    assert again["id"] == envelope["id"]  # stable ids let consumers deduplicate


def test_parent_array_properties_have_all_statuses() -> None:
    sub = submission(array_size=3)
    parent = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.SUBMITTED, created_at=1)
    props = wire.array_properties(parent)
    assert props is not None and props["size"] == 3
    assert set(props["statusSummary"]) == {s.value for s in JobStatus}


def test_summary_shape() -> None:
    sub = submission()
    job = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.FAILED, created_at=1, exit_code=2,
              container_reason="OutOfMemoryError: Container killed due to memory usage", log_stream="x")
    summary = wire.job_summary(job)
    assert summary["container"] == {"exitCode": 2,
                                    "reason": "OutOfMemoryError: Container killed due to memory usage"}
    assert summary["jobDefinition"] == sub.job_definition


def test_resource_shapes() -> None:
    ce = ComputeEnvironment(name="local", arn=arns.compute_environment_arn("local"), type="MANAGED",
                            state="ENABLED", compute_resources={"type": "EC2", "maxvCpus": 2}, tags={})
    assert wire.compute_environment(ce)["computeResources"]["maxvCpus"] == 2
    queue = JobQueue(name="q", arn=arns.queue_arn("q"), priority=5, state="ENABLED", ce_order=[(1, "local")],
                     tags={}, seq=1)
    assert wire.job_queue(queue)["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": arns.compute_environment_arn("local")}]
    jd = JobDefinition(name="jd", revision=2, arn=arns.job_definition_arn("jd", 2), status="ACTIVE",
                       body={"type": "container", "containerProperties": {"image": "x"}})
    shaped = wire.job_definition(jd)
    assert (shaped["revision"], shaped["status"], shaped["type"]) == (2, "ACTIVE", "container")
