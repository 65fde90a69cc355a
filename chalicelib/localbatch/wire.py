"""Domain <-> Batch JSON (camelCase); sole owner of wire names for jobs, queues, environments, definitions.

Job details are built as JSON text: the fields an array's children share are serialised once
per submission and spliced in, because the engine writes one detail per state change and a
10,000-child array makes 50,000 of them.
"""

from __future__ import annotations

import json
import time
from operator import attrgetter
from typing import Any

import orjson

from chalicelib.localbatch import arns
from chalicelib.localbatch.model import (
    ALL_STATUSES,
    ComputeEnvironment,
    Job,
    JobDefinition,
    JobQueue,
    Submission,
)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _static_fragments(sub: Submission) -> tuple[str, str]:
    if not sub.static_json:
        static = {
            "jobQueue": arns.queue_arn(sub.queue),
            "jobDefinition": sub.job_definition,
            "parameters": sub.parameters,
            "dependsOn": sub.depends_on,
            "tags": sub.tags,
            "propagateTags": sub.propagate_tags,
            "platformCapabilities": ["EC2"],
        }
        if sub.retry_strategy:
            static["retryStrategy"] = sub.retry_strategy
        if sub.timeout_seconds:
            static["timeout"] = {"attemptDurationSeconds": sub.timeout_seconds}
        if sub.scheduling_priority is not None:
            static["schedulingPriority"] = sub.scheduling_priority
        if sub.share_identifier:
            static["shareIdentifier"] = sub.share_identifier
        sub.static_json = _dumps(static)[1:-1]
        sub.container_json = _dumps(sub.container)[1:-1]
    return sub.static_json, sub.container_json


def container_dynamic(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if job.exit_code is not None:
        out["exitCode"] = job.exit_code
    if job.container_reason:
        out["reason"] = job.container_reason
    if job.log_stream:
        out["logStreamName"] = job.log_stream
    return out


def array_properties(job: Job) -> dict[str, Any] | None:
    if job.index is not None:
        return {"index": job.index}
    if job.summary is not None:
        return {"size": job.sub.array_size, "statusSummary": dict(job.summary),
                "statusSummaryLastUpdatedAt": job.summary_at}
    if job.sub.array_size is not None:
        return {"size": job.sub.array_size, "statusSummary": {s: 0 for s in ALL_STATUSES}}
    return None


def detail_json(job: Job) -> str:
    """The DescribeJobs JobDetail of a job, as compact JSON text."""
    static, container = _static_fragments(job.sub)
    dynamic: dict[str, Any] = {
        "jobArn": arns.job_arn(job.job_id),
        "jobName": job.sub.name,
        "jobId": job.job_id,
        "status": job.status.value,
        "createdAt": job.created_at,
        "attempts": job.attempts,
        "isCancelled": job.is_cancelled,
        "isTerminated": job.is_terminated,
    }
    if job.status_reason:
        dynamic["statusReason"] = job.status_reason
    if job.started_at is not None:
        dynamic["startedAt"] = job.started_at
    if job.stopped_at is not None:
        dynamic["stoppedAt"] = job.stopped_at
    props = array_properties(job)
    if props is not None:
        dynamic["arrayProperties"] = props
    head = _dumps(dynamic)[:-1]
    dyn_container = _dumps(container_dynamic(job))[1:-1]
    joined_container = ",".join(part for part in (dyn_container, container) if part)
    body = f'{head},"container":{{{joined_container}}}'
    if static:
        body += "," + static
    return body + "}"


class _IsoClock:
    """Formats EventBridge `time` strings, caching the current second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def format(self, ms: int) -> str:
        second = ms // 1000
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._text


_iso = _IsoClock()


# A job's dynamic state, as stored in its row and, behind an "S", with each of its events.
# Every field that ever changes after submission: the rest of a job is its submission.
STATE_FIELDS = ("status_reason", "created_at", "started_at", "stopped_at", "attempts", "exit_code",
                "container_reason", "log_stream", "is_cancelled", "is_terminated", "cancel_reason",
                "instance_id", "placed_ce", "summary_at", "status")
_state_values = attrgetter(*STATE_FIELDS)


def state_json(job: Job) -> str:
    """A job's dynamic state as compact JSON text (UTF-8 left as is, not \\u-escaped).

    One encoding serves both the event snapshot and the job's row, so a state change is
    encoded once. orjson: this runs on every state change with the engine lock held, and
    it encodes these small dicts about four times faster than the json module.
    An array parent's state carries its status summary (events show it; loading ignores it,
    as the summary is rebuilt from the children).
    """
    state = dict(zip(STATE_FIELDS, _state_values(job)))
    if job.summary is not None:
        state["summary"] = job.summary
    try:
        return orjson.dumps(state).decode()
    except orjson.JSONEncodeError:
        # Text orjson refuses (a lone surrogate that slipped past validation): the json module
        # escapes it as ASCII, so this job's row still commits and never blocks other jobs'.
        return _dumps(state)


def snapshot_json(job: Job) -> str:
    """The part of a job's detail that changes, as stored with each state-change event.

    Events keep this snapshot rather than the whole envelope: the rest of the detail is
    the job's submission, which never changes, so the envelope is rebuilt exactly on read
    at a fraction of the cost per state change.
    """
    return "S" + state_json(job)


def event_id(token: str, seq: int) -> str:
    """A stable UUID-shaped id per event: reading an event twice gives the same id (dedup works)."""
    return f"{token[:8]}-{token[8:12]}-4{token[13:16]}-8{token[17:20]}-{seq:012x}"


def render_event(token: str, seq: int, job_id: str, time_ms: int, body: str, sub: Submission | None) -> str:
    """Rebuilds the EventBridge envelope of a stored event as JSON text."""
    if body.startswith("E"):
        return body[1:].replace('"id":""', f'"id":"{event_id(token, seq)}"', 1)
    if sub is None:
        raise LookupError(f"no submission for job {job_id}")
    from chalicelib.localbatch.model import JobStatus
    state = json.loads(body[1:])
    index = None if job_id == sub.job_id else int(job_id.rsplit(":", 1)[1])
    job = Job(job_id=job_id, sub=sub, index=index, status=JobStatus(state.pop("status")),
              created_at=state["created_at"])
    for name, value in state.items():
        setattr(job, name, value)
    return (
        '{"version":"0","id":"' + event_id(token, seq) + '","detail-type":"Batch Job State Change",'
        '"source":"aws.batch","account":"' + arns.ACCOUNT + '","time":"' + _iso.format(time_ms) + '",'
        '"region":"' + arns.REGION + '","resources":["' + arns.job_arn(job_id) + '"],'
        '"detail":' + detail_json(job) + "}"
    )


def queue_blocked_event_json(job: Job, queue: JobQueue, now_ms: int) -> str:
    """A `Batch Job Queue Blocked` envelope, stored whole (prefix E); its id is filled in on read."""
    envelope = {
        "version": "0", "id": "", "detail-type": "Batch Job Queue Blocked",
        "source": "aws.batch", "account": arns.ACCOUNT, "time": _iso.format(now_ms),
        "region": arns.REGION, "resources": [arns.job_arn(job.job_id), queue.arn],
        "detail": {"jobArn": arns.job_arn(job.job_id), "jobName": job.sub.name, "jobId": job.job_id,
                   "jobQueue": queue.arn, "status": job.status.value, "statusReason": job.status_reason,
                   "createdAt": job.created_at},
    }
    return "E" + _dumps(envelope)


def job_summary(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobArn": arns.job_arn(job.job_id), "jobId": job.job_id, "jobName": job.sub.name,
        "createdAt": job.created_at, "status": job.status.value,
        "jobDefinition": job.sub.job_definition,
    }
    if job.status_reason:
        out["statusReason"] = job.status_reason
    if job.started_at is not None:
        out["startedAt"] = job.started_at
    if job.stopped_at is not None:
        out["stoppedAt"] = job.stopped_at
    container = {k: v for k, v in container_dynamic(job).items() if k in ("exitCode", "reason")}
    if container:
        out["container"] = container
    props = array_properties(job)
    if props is not None:
        out["arrayProperties"] = props
    return out


def compute_environment(ce: ComputeEnvironment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn, "tags": ce.tags,
        "type": ce.type, "state": ce.state, "status": ce.status, "statusReason": ce.status_reason,
        "containerOrchestrationType": "ECS",
    }
    if ce.compute_resources is not None:
        out["computeResources"] = ce.compute_resources
    if ce.service_role:
        out["serviceRole"] = ce.service_role
    return out


def job_queue(queue: JobQueue) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobQueueName": queue.name, "jobQueueArn": queue.arn, "state": queue.state,
        "status": queue.status, "statusReason": queue.status_reason, "priority": queue.priority,
        "computeEnvironmentOrder": [
            {"order": order, "computeEnvironment": arns.compute_environment_arn(name)}
            for order, name in queue.ce_order
        ],
        "tags": queue.tags, "jobQueueType": "ECS",
        "jobStateTimeLimitActions": queue.time_limit_actions,
    }
    if queue.scheduling_policy_arn:
        out["schedulingPolicyArn"] = queue.scheduling_policy_arn
    return out


def job_definition(jd: JobDefinition) -> dict[str, Any]:
    return {"jobDefinitionName": jd.name, "jobDefinitionArn": jd.arn, "revision": jd.revision,
            "status": jd.status, "containerOrchestrationType": "ECS", **jd.body}
