"""ARN and id construction for jobs, queues, compute environments and job definitions."""

from __future__ import annotations

import uuid

REGION = "us-east-1"
ACCOUNT = "000000000000"
_PREFIX = f"arn:aws:batch:{REGION}:{ACCOUNT}:"


def new_job_id() -> str:
    return str(uuid.uuid4())


def job_arn(job_id: str) -> str:
    return f"{_PREFIX}job/{job_id}"


def queue_arn(name: str) -> str:
    return f"{_PREFIX}job-queue/{name}"


def compute_environment_arn(name: str) -> str:
    return f"{_PREFIX}compute-environment/{name}"


def job_definition_arn(name: str, revision: int) -> str:
    return f"{_PREFIX}job-definition/{name}:{revision}"


def name_from_arn(value: str, resource: str) -> str:
    """Returns the resource name when given a name or an ARN of that resource type."""
    marker = f":{resource}/"
    if value.startswith("arn:") and marker in value:
        return value.split(marker, 1)[1]
    return value


def resource_of_arn(arn: str) -> tuple[str, str] | None:
    """Splits `arn:aws:batch:r:a:<type>/<name>` into (type, name); None if not a Batch ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "batch" or "/" not in parts[5]:
        return None
    kind, name = parts[5].split("/", 1)
    return kind, name
