"""The scheduler's in-memory tables and the one way its collaborators change a job's status.

The Scheduler owns a SchedulerState and hands it, with itself as the `Transitions`, to the
collaborators it holds (attempts.py, arming.py, control.py). Everything here is read and
changed only under the engine lock.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Protocol

from chalicelib.localbatch.model import ComputeEnvironment, Job, JobDefinition, JobQueue, JobStatus
from chalicelib.localbatch.scheduling.capacity import HostLedger


@dataclass(frozen=True)
class EngineOptions:
    kill_grace_seconds: float = 30.0  # SIGTERM then SIGKILL, as ECS StopTask does
    spot_reclaim_rate: float = 0.0  # default for SPOT environments without the tag
    reclaim_window_seconds: float = 2.0  # a reclaimed attempt is lost within this time of starting
    seed: int | None = None
    group_commit_ms: int = 10  # the engine loop commits at most this long after a change


class Transitions(Protocol):
    """Status changes, journaled for the next commit (the Scheduler implements this)."""

    def now(self) -> int: ...

    def set_status(self, job: Job, status: JobStatus, reason: str | None = None) -> None: ...

    def touch(self, job: Job) -> None: ...

    def journal(self, job_id: str, at: int, event: str) -> None: ...


def attempt_key(job: Job) -> str:
    """The key of the job's current attempt, as executors and timers know it."""
    return f"{job.job_id}#{job.attempt_number}"


@dataclass(eq=False)
class SchedulerState:
    """Jobs, resources, running attempts, queues of waiting jobs and timers."""

    ledger: HostLedger
    jobs: dict[str, Job] = field(default_factory=dict)
    top_level: list[Job] = field(default_factory=list)  # parents and plain jobs, in submission order
    ces: dict[str, ComputeEnvironment] = field(default_factory=dict)
    queues: dict[str, JobQueue] = field(default_factory=dict)
    job_definitions: dict[str, list[JobDefinition]] = field(default_factory=dict)
    running: dict[str, Job] = field(default_factory=dict)  # attempt key -> job
    armed: dict[str, Job] = field(default_factory=dict)  # running attempt key -> the RUNNABLE job armed on it
    # queue name -> heap of (submission seq, array index or -1, job id) of RUNNABLE jobs
    runnable: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    timers: list[tuple[int, str, str]] = field(default_factory=list)  # (due ms, kind, attempt key or job id)
    blocked_reported: set[str] = field(default_factory=set)  # queue heads reported as unable to run
    # A dependent was released by a dependency's end that is not yet committed: nothing may be
    # placed or armed until it is (see Scheduler.tick), or a kill -9 inside the group-commit window
    # would leave a dependent that ran while its dependency, on restart, runs again.
    release_uncommitted: bool = False

    def push_runnable(self, job: Job) -> None:
        heap = self.runnable.setdefault(job.sub.queue, [])
        heapq.heappush(heap, (job.sub.seq, -1 if job.index is None else job.index, job.job_id))

    def head(self, queue: JobQueue) -> Job | None:
        """The queue's first job waiting for a slot; entries of jobs that left RUNNABLE or were armed
        since they were queued are dropped on the way."""
        heap = self.runnable.get(queue.name)
        while heap:
            job = self.jobs.get(heap[0][2])
            if job is not None and job.status is JobStatus.RUNNABLE and job.armed_on is None:
                return job
            heapq.heappop(heap)
        return None

    def pop_head(self, queue: JobQueue) -> None:
        """Drops the head `head(queue)` just returned: it was placed or armed."""
        heapq.heappop(self.runnable[queue.name])

    def queues_by_priority(self) -> list[JobQueue]:
        return sorted(self.queues.values(), key=lambda q: (-q.priority, q.seq))
