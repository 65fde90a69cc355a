"""Run-store records: the values the run store keeps (runs, submitted jobs, stages, items, waits).

Every run store implementation (SQLite locally, DynamoDB on AWS) stores and returns exactly
these frozen dataclasses, so the submitter, the tracker and the CLI never see storage rows.
Timestamps are epoch milliseconds, as in AWS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    ``items`` the number of items. ``failures`` lists the first human-readable failure entries
    once the run has ended (dicts with stage, item, reason, jobId); ``failure_count`` counts all
    of them (``run_end.bound_failures`` keeps the record and its event under the AWS size limits).
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
    failure_count: int = 0  # every failure; ``failures`` keeps only the first ones (size limits)


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


# -- status only moves forward: the one rule both run stores apply -------------------------


def is_forward(current: str, new: str) -> bool:
    """True when Batch status ``new`` is later in the lifecycle than ``current``.

    A retried attempt goes RUNNING -> RUNNABLE on Batch; per job only forward progress is
    recorded, so such a move is ignored until the attempt ends (SUCCEEDED/FAILED).
    """
    return BATCH_STATUS_ORDER.get(new, -1) > BATCH_STATUS_ORDER.get(current, -1)


def advanced_job(
    job: JobRecord,
    status: str,
    *,
    reason: str = "",
    started_at: int | None = None,
    stopped_at: int | None = None,
) -> JobRecord | None:
    """``job`` moved to ``status``, or None when that is not a move forward (nothing to write).

    A move that carries no reason or time keeps the earlier ones: an event without a
    ``statusReason`` does not erase what an earlier event said.
    """
    if not is_forward(job.status, status):
        return None
    return replace(
        job, status=status, status_reason=reason or job.status_reason,
        started_at=started_at if started_at is not None else job.started_at,
        stopped_at=stopped_at if stopped_at is not None else job.stopped_at,
    )


def updated_run(
    run: RunRecord,
    *,
    status: RunStatus,
    ended_at: int | None = None,
    failures: Sequence[dict[str, Any]] | None = None,
    failure_count: int | None = None,
) -> RunRecord | None:
    """``run`` with the update applied, or None when it would move a finished run back.

    A finished (SUCCEEDED/FAILED) run never returns to SUBMITTING/RUNNING: a late "RUNNING"
    from the submitting thread must not undo the verdict. Fields not given keep their values.
    """
    if run.status.is_terminal and not status.is_terminal:
        return None
    kept = tuple(failures) if failures is not None else run.failures
    return replace(
        run, status=status, ended_at=ended_at if ended_at is not None else run.ended_at, failures=kept,
        failure_count=failure_count if failure_count is not None else max(run.failure_count, len(kept)),
    )
