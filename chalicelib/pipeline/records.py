"""Run-store records: the values the run store keeps (runs, submitted jobs, stages, items, waits).

Every run store implementation (SQLite locally, DynamoDB on AWS) stores and returns exactly
these frozen dataclasses, so the submitter, the tracker and the CLI never see storage rows.
Timestamps are epoch milliseconds, as in AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """Lifecycle of a pipeline run (AWS-style spellings)."""

    SUBMITTING = "SUBMITTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED)


class StageStatus(str, Enum):
    """Lifecycle of one stage of a run."""

    WAITING = "WAITING"      # planned; deferred join not submitted yet
    SUBMITTED = "SUBMITTED"  # its Batch jobs exist
    RUNNING = "RUNNING"      # at least one of its jobs or children started
    SUCCEEDED = "SUCCEEDED"  # every item succeeded
    FAILED = "FAILED"        # at least one item failed (or the stage never ran)

    @property
    def is_terminal(self) -> bool:
        return self in (StageStatus.SUCCEEDED, StageStatus.FAILED)


# Batch job statuses in lifecycle order; used to refuse regressions from late events.
BATCH_STATUS_ORDER: dict[str, int] = {
    "SUBMITTED": 0,
    "PENDING": 1,
    "RUNNABLE": 2,
    "STARTING": 3,
    "RUNNING": 4,
    "SUCCEEDED": 5,
    "FAILED": 5,
}
TERMINAL_BATCH_STATUSES = frozenset({"SUCCEEDED", "FAILED"})


@dataclass(frozen=True)
class RunRecord:
    """One pipeline run.

    ``spec`` is the spec snapshot as a JSON-able dict (what was planned), ``prefix`` the run's
    object-store prefix (``file://...`` or ``s3://...``) holding the manifest and outputs, and
    ``items`` the number of items. ``failures`` lists human-readable failure entries once the run
    has ended (dicts with stage, item, reason, job_id).
    """

    run_id: str
    pipeline: str
    status: RunStatus
    created_at: int
    prefix: str
    items: int
    spec: dict[str, Any] = field(default_factory=dict)
    ended_at: int | None = None
    source: str = ""
    failures: tuple[dict[str, Any], ...] = ()
    parent_run_id: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """One submitted Batch job of a run (a stage's array or plain job, a barrier, a join).

    ``key`` is the planned job's deterministic key inside the run (e.g. ``align.c0``); ``offset``
    and ``size`` say which items of the stage's item list it covers (``size`` children for an
    array job, 1 for a plain job). ``status`` is the latest Batch status seen for it.
    """

    run_id: str
    key: str
    stage: str
    job_id: str
    job_name: str
    offset: int = 0
    size: int = 1
    is_array: bool = False
    is_barrier: bool = False
    status: str = "SUBMITTED"
    status_reason: str = ""
    started_at: int | None = None
    stopped_at: int | None = None


@dataclass(frozen=True)
class StageRecord:
    """Status of one stage of a run with its item counts per Batch status."""

    run_id: str
    stage: str
    status: StageStatus
    items: int
    counts: dict[str, int] = field(default_factory=dict)
    started_at: int | None = None
    ended_at: int | None = None
    deferred: bool = False


@dataclass(frozen=True)
class ItemResult:
    """Outcome of one item in one stage (index into the stage's item list)."""

    run_id: str
    stage: str
    index: int
    status: str
    job_id: str = ""
    reason: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class WaitOutcome:
    """What ``put_task_token``/``put_stage_result`` return in the AWS wait pattern.

    ``completed`` is True when both halves (the waiting task's token and the stage's result)
    are now present, i.e. the caller must resume the wait: ``token`` and ``result`` are then
    both set. When only one half is present, ``completed`` is False and nothing must be done.
    """

    completed: bool
    token: str | None = None
    result: dict[str, Any] | None = None
