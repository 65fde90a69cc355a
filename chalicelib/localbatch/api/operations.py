"""One method per Batch operation, dispatched by AWS operation name; request validation lives in ops_*."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from chalicelib.localbatch.api import validation
from chalicelib.localbatch.api.jobs import JobOperations
from chalicelib.localbatch.api.resources import ResourceOperations
from chalicelib.localbatch.errors import ClientException
from chalicelib.localbatch.scheduling.scheduler import Scheduler

# AWS operation name -> (handler attribute, whether it may change scheduling state)
OPERATIONS: dict[str, tuple[str, bool]] = {
    "CreateComputeEnvironment": ("create_compute_environment", True),
    "DescribeComputeEnvironments": ("describe_compute_environments", False),
    "UpdateComputeEnvironment": ("update_compute_environment", True),
    "DeleteComputeEnvironment": ("delete_compute_environment", True),
    "CreateJobQueue": ("create_job_queue", True),
    "DescribeJobQueues": ("describe_job_queues", False),
    "UpdateJobQueue": ("update_job_queue", True),
    "DeleteJobQueue": ("delete_job_queue", True),
    "RegisterJobDefinition": ("register_job_definition", False),
    "DescribeJobDefinitions": ("describe_job_definitions", False),
    "DeregisterJobDefinition": ("deregister_job_definition", False),
    "SubmitJob": ("submit_job", True),
    "DescribeJobs": ("describe_jobs", False),
    "ListJobs": ("list_jobs", False),
    "CancelJob": ("cancel_job", True),
    "TerminateJob": ("terminate_job", True),
    "TagResource": ("tag_resource", False),
    "UntagResource": ("untag_resource", False),
    "ListTagsForResource": ("list_tags_for_resource", False),
}


class BatchService:
    """Runs operations under the engine lock; the changes an operation makes are committed before it returns."""

    def __init__(self, scheduler: Scheduler, lock: threading.RLock, wake: Callable[[], None]) -> None:
        self.scheduler = scheduler
        self.lock = lock
        self.wake = wake
        self.resources = ResourceOperations(scheduler)
        self.jobs = JobOperations(scheduler, self.resources)

    def call(self, operation: str, body: Any) -> dict[str, Any]:
        """Runs one operation. Raises ClientException for the caller's mistakes."""
        entry = OPERATIONS.get(operation)
        if entry is None:
            raise ClientException(f"{operation}: operation not supported by the local engine")
        if not isinstance(body, dict):
            raise validation.fail("request body", "a JSON object", body)
        validation.clean_text(body)
        attr, changes_schedule = entry
        target = self.jobs if hasattr(self.jobs, attr) else self.resources
        with self.lock:
            result: dict[str, Any] = getattr(target, attr)(body)
            self.scheduler.commit()  # cancel/terminate changes and their events are durable on return
        if changes_schedule:
            self.wake()
        return result
