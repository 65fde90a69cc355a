"""CloudWatch Logs reader: a Batch job's log stream, for `conveyor logs` pointed at AWS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from chalicelib.pipeline.errors import PipelineError

BATCH_LOG_GROUP = "/aws/batch/job"  # where Batch's awslogs driver writes by default


class JobLogError(PipelineError):
    """The job has no log stream yet (never started) or the stream cannot be read."""


def log_stream_of(job: Mapping[str, Any], attempt: int | None = None) -> str:
    """The log stream of a DescribeJobs job: the given attempt's (0-based), else the latest.

    Raises:
        JobLogError: the job (or that attempt) has no log stream, e.g. it never started.
    """
    attempts = list(job.get("attempts") or [])
    if attempt is not None:
        if not 0 <= attempt < len(attempts):
            raise JobLogError(f"attempt: job {job.get('jobId')} has {len(attempts)} attempts, asked for {attempt}")
        stream = (attempts[attempt].get("container") or {}).get("logStreamName")
    else:
        stream = (job.get("container") or {}).get("logStreamName")
        if not stream and attempts:
            stream = (attempts[-1].get("container") or {}).get("logStreamName")
    if not stream:
        raise JobLogError(f"job {job.get('jobId')} has no log stream yet (status {job.get('status')})")
    return str(stream)


def read_log_lines(logs: Any, stream: str, *, group: str = BATCH_LOG_GROUP, limit: int | None = None) -> Iterator[str]:
    """Yields the stream's messages from the start, following pages until the end (or ``limit``)."""
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    seen = 0
    while True:
        try:
            page = logs.get_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException as err:
            raise JobLogError(f"log stream {group}/{stream} not found") from err
        for event in page.get("events", []):
            yield str(event["message"])
            seen += 1
            if limit is not None and seen >= limit:
                return
        token = page.get("nextForwardToken")
        # CloudWatch signals the end by returning the token it was given.
        if not page.get("events") or token == kwargs.get("nextToken"):
            return
        kwargs["nextToken"] = token
