"""In-memory fake of the Batch client subset the pipeline core uses (unit tests only).

Records every call, hands out predictable job ids, and answers ListJobs by name (queue +
JOB_NAME filter) or by array parent and status, so submitter and tracker logic can be
tested without an engine. Array children's statuses are set by the test (``child_status``).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


class FakeBatch:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.definitions: list[dict[str, Any]] = []
        self.child_status: dict[str, dict[int, tuple[str, str]]] = {}  # parent -> index -> (status, reason)
        self.fail_submit_after: int | None = None
        self._counter = 0

    def _record(self, name: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((name, kwargs))

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    def submit_job(self, **kwargs: Any) -> dict[str, Any]:
        self._record("submit_job", kwargs)
        if self.fail_submit_after is not None and self.count("submit_job") > self.fail_submit_after:
            raise ClientError({"Error": {"Code": "ClientException", "Message": "refused"}}, "SubmitJob")
        self._counter += 1
        job_id = f"job-{self._counter}"
        self.jobs[job_id] = {"jobId": job_id, "jobName": kwargs["jobName"], "status": "SUBMITTED", **kwargs}
        return {"jobId": job_id, "jobName": kwargs["jobName"], "jobArn": f"arn:job/{job_id}"}

    def list_jobs(self, **kwargs: Any) -> dict[str, Any]:
        self._record("list_jobs", kwargs)
        if "arrayJobId" in kwargs:
            children = self.child_status.get(kwargs["arrayJobId"], {})
            return {
                "jobSummaryList": [
                    {"jobId": f"{kwargs['arrayJobId']}:{i}", "status": status, "statusReason": reason,
                     "arrayProperties": {"index": i}, "container": {"exitCode": 1}}
                    for i, (status, reason) in sorted(children.items())
                    if status == kwargs.get("jobStatus", "RUNNING")
                ]
            }
        name = kwargs["filters"][0]["values"][0]
        return {
            "jobSummaryList": [
                {"jobId": j["jobId"], "jobName": j["jobName"], "status": j["status"]}
                for j in self.jobs.values()
                if j["jobName"].lower() == name.lower() and j["jobQueue"] == kwargs["jobQueue"]
            ]
        }

    def describe_jobs(self, **kwargs: Any) -> dict[str, Any]:
        self._record("describe_jobs", kwargs)
        return {"jobs": [self.jobs[j] for j in kwargs["jobs"] if j in self.jobs]}

    def terminate_job(self, **kwargs: Any) -> dict[str, Any]:
        self._record("terminate_job", kwargs)
        return {}

    def register_job_definition(self, **kwargs: Any) -> dict[str, Any]:
        self._record("register_job_definition", kwargs)
        name = kwargs["jobDefinitionName"]
        revision = 1 + sum(1 for d in self.definitions if d["jobDefinitionName"] == name)
        self.definitions.append({**kwargs, "revision": revision, "status": "ACTIVE"})
        return {"jobDefinitionName": name, "revision": revision, "jobDefinitionArn": f"arn:jd/{name}:{revision}"}

    def describe_job_definitions(self, **kwargs: Any) -> dict[str, Any]:
        self._record("describe_job_definitions", kwargs)
        name = kwargs.get("jobDefinitionName")
        return {"jobDefinitions": [d for d in self.definitions if d["jobDefinitionName"] == name]}
