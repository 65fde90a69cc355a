"""Jobs, submissions, queues, compute environments and job definitions; statuses and legal moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


ALL_STATUSES = tuple(s.value for s in JobStatus)

# Legal moves; RUNNING/STARTING -> RUNNABLE is a retry. Anything else is a bug in the scheduler.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.PENDING, JobStatus.RUNNABLE, JobStatus.FAILED}),
    JobStatus.PENDING: frozenset({JobStatus.RUNNABLE, JobStatus.FAILED, JobStatus.SUCCEEDED}),
    JobStatus.RUNNABLE: frozenset({JobStatus.STARTING, JobStatus.FAILED}),
    JobStatus.STARTING: frozenset({JobStatus.RUNNING, JobStatus.RUNNABLE, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNABLE}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}

# Status reasons AWS Batch uses (see reference/aws-batch-semantics.md section 1).
REASON_EXITED = "Essential container in task exited"
REASON_DEPENDENCY_FAILED = "Dependent Job failed"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
REASON_START_FAILED = "Task failed to start"
REASON_OOM = "OutOfMemoryError: Container killed due to memory usage"
REASON_ARRAY_CHILD_FAILED = "Array Child Job failed"
BLOCKED_CPU = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue "
    "cannot meet the CPU requirement of the job."
)
BLOCKED_MEMORY = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (MEMORY) is higher "
    "than that can be met by the CE(s) attached to the job queue."
)
BLOCKED_GPU = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (GPU) is higher "
    "than that can be met by the CE(s) attached to the job queue."
)
BLOCKED_NO_CE = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - No ENABLED compute environment is "
    "attached to the job queue."
)


def host_terminated_reason(instance_id: str) -> str:
    """The statusReason AWS writes when a Spot host is reclaimed or an instance is lost."""
    return f"Host EC2 (instance {instance_id}) terminated."


@dataclass(frozen=True, slots=True)
class Resources:
    vcpus: float
    memory_mib: int
    gpus: int = 0


@dataclass(slots=True)
class Submission:
    """What one SubmitJob asked for: shared by an array parent and all its children."""

    job_id: str
    seq: int
    name: str
    queue: str
    job_definition: str  # full ARN with revision
    container: dict[str, Any]  # effective container properties (after overrides and Ref:: substitution)
    resources: Resources
    parameters: dict[str, str]
    retry_strategy: dict[str, Any] | None
    timeout_seconds: int | None
    depends_on: list[dict[str, str]]
    array_size: int | None
    tags: dict[str, str]
    propagate_tags: bool
    scheduling_priority: int | None
    share_identifier: str | None
    created_at: int
    failure: str | None = None  # set when the job must fail on arrival (e.g. overrides too long)
    static_json: str = ""  # cached JSON fragments of the detail fields children share
    container_json: str = ""


@dataclass(slots=True, eq=False)
class Job:
    """A job's live state. Array children point at their parent's Submission."""

    job_id: str
    sub: Submission
    index: int | None
    status: JobStatus
    created_at: int
    parent: Job | None = None
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    container_reason: str | None = None
    log_stream: str | None = None
    is_cancelled: bool = False
    is_terminated: bool = False
    cancel_reason: str | None = None  # CancelJob on PENDING waits for dependencies to complete
    # Scheduling state, rebuilt on load, never stored.
    unmet: int = 0
    dependents: list[Job] = field(default_factory=list)
    placed_ce: str | None = None
    gpu_ids: tuple[int, ...] = ()
    stop_cause: str | None = None  # "timeout" | "terminate" | "reclaim" while a stop is in flight
    stop_reason: str | None = None
    deadline_ms: int | None = None
    workdir: str = ""  # the current attempt's scratch folder
    reclaim_at_ms: int | None = None
    instance_id: str = ""
    armed_on: str | None = None  # the running attempt whose slot this RUNNABLE job is armed to take
    disarm_action: tuple[str, str] | None = None  # ("cancel" | "terminate", reason) once withdrawn
    # wire.state_json at the job's last status change, reused for its row at the next commit;
    # "" when something changed since (Scheduler.touch), so the row is encoded afresh.
    encoded_state: str = ""
    # Array parents only.
    children: list[Job] | None = None
    summary: dict[str, int] | None = None
    summary_at: int | None = None

    @property
    def is_parent(self) -> bool:
        return self.index is None and self.sub.array_size is not None

    @property
    def attempt_number(self) -> int:
        return len(self.attempts) + 1


@dataclass(slots=True)
class ComputeEnvironment:
    name: str
    arn: str
    type: str  # MANAGED | UNMANAGED
    state: str  # ENABLED | DISABLED
    compute_resources: dict[str, Any] | None
    tags: dict[str, str]
    service_role: str | None = None
    status: str = "VALID"
    status_reason: str = "ComputeEnvironment Healthy"
    # Accounting (not stored).
    used_vcpus: float = 0.0

    @property
    def max_vcpus(self) -> float | None:
        if self.compute_resources is None:
            return None
        # Numeric safety: a value validation now refuses may still sit in an older store; a
        # number too big for a float is "no limit" (the host caps it), anything else unusable is 0.
        raw = self.compute_resources.get("maxvCpus", 0)
        try:
            value = float(raw)
        except OverflowError:
            return float("inf")
        except (TypeError, ValueError):
            return 0.0
        return value if value == value else 0.0  # NaN

    @property
    def resource_type(self) -> str:
        return str((self.compute_resources or {}).get("type", "EC2"))


@dataclass(slots=True)
class JobQueue:
    name: str
    arn: str
    priority: int
    state: str
    ce_order: list[tuple[int, str]]  # (order, ce name), ascending
    tags: dict[str, str]
    seq: int
    time_limit_actions: list[dict[str, Any]] = field(default_factory=list)
    scheduling_policy_arn: str | None = None
    status: str = "VALID"
    status_reason: str = "JobQueue Healthy"


@dataclass(slots=True)
class JobDefinition:
    name: str
    revision: int
    arn: str
    status: str  # ACTIVE | INACTIVE
    body: dict[str, Any]  # everything else, wire-shaped (containerProperties, retryStrategy, ...)
