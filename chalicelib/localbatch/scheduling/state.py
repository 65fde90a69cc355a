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

    def commit_durably(self) -> None: ...


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
    # Dependency order must survive a kill -9: a job made RUNNABLE by its dependencies' ends may be
    # placed or armed only once those ends are committed, or a crash inside the group-commit window
    # brings a dependency back (as a lost host) to run again after its dependent ran. Batches are
    # numbered as the scheduler takes them; `released` maps such a job to the batch that carries
    # its release (the next one taken), in that order, and placement commits first only when that
    # batch is not written yet: most dependents wait in their queue far longer than that anyway.
    released: dict[str, int] = field(default_factory=dict)
    batches_taken: int = 0
    batches_written: int = 0  # set by the writer of a batch, which may run outside the engine lock

    def note_release(self, job: Job) -> None:
        """The job went RUNNABLE because jobs it depends on ended (now or before, maybe uncommitted)."""
        self.released.pop(job.job_id, None)  # kept in batch order
        self.released[job.job_id] = self.batches_taken + 1

    def release_committed(self, job: Job) -> bool:
        """False while the batch carrying the job's release is not written yet."""
        batch = self.released.get(job.job_id)
        return batch is None or batch <= self.batches_written

    def forget_written_releases(self) -> None:
        """Drops the releases of written batches (the oldest first: the dict is in batch order)."""
        released, written = self.released, self.batches_written
        while released:
            job_id = next(iter(released))
            if released[job_id] > written:
                return
            del released[job_id]

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
