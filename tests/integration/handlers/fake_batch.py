"""A recording in-memory Batch client (the BatchClient port) for handler tests under moto."""

from __future__ import annotations

import uuid
from typing import Any


class FakeBatch:
    """Accepts submits, remembers them, and records TerminateJob calls; shapes as boto3's."""

    def __init__(self, *, report_as: str = "SUBMITTED") -> None:
        """``report_as``: the status DescribeJobs reports for every job (e.g. SUCCEEDED)."""
        self.jobs: dict[str, dict[str, Any]] = {}
        self.terminated: list[tuple[str, str]] = []
        self.describe_calls = 0
        self._report_as = report_as

    def submit_job(self, **kwargs: Any) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {"jobId": job_id, "jobName": kwargs["jobName"], "status": self._report_as, **kwargs}
        return {"jobId": job_id, "jobName": kwargs["jobName"], "jobArn": f"arn:aws:batch:us-east-1:1:job/{job_id}"}

    def describe_jobs(self, **kwargs: Any) -> dict[str, Any]:
        self.describe_calls += 1
        return {"jobs": [self.jobs[j] for j in kwargs.get("jobs", []) if j in self.jobs]}

    def list_jobs(self, **kwargs: Any) -> dict[str, Any]:
        return {"jobSummaryList": []}

    def terminate_job(self, **kwargs: Any) -> dict[str, Any]:
        self.terminated.append((kwargs["jobId"], kwargs["reason"]))
        return {}

    def register_job_definition(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("on AWS the job definitions come from CDK; nothing may register one")

    def describe_job_definitions(self, **kwargs: Any) -> dict[str, Any]:
        return {"jobDefinitions": []}
