"""Admission and dependencies: SUBMITTED jobs become PENDING or RUNNABLE, array parents spawn
their children, and a job's end releases or fails the jobs that wait on it.

The Scheduler holds one Admission; all under the engine lock.
"""

from __future__ import annotations

from collections import deque

from chalicelib.localbatch import wire
from chalicelib.localbatch.model import (
    ALL_STATUSES,
    REASON_ARRAY_CHILD_FAILED,
    REASON_DEPENDENCY_FAILED,
    Job,
    JobStatus,
)
from chalicelib.localbatch.scheduling.state import SchedulerState, Transitions

SPAWN_BATCH = 2000  # children created per tick


class Admission:
    """Admits submissions and keeps dependency counts; the Scheduler calls on_terminal on every end."""

    def __init__(self, state: SchedulerState, transitions: Transitions, admissions: deque[Job]) -> None:
        self.state = state
        self.transitions = transitions
        self.admissions = admissions  # submissions waiting to be admitted, in order (the API appends)

    def rewire(self, job: Job) -> None:
        """Re-links a PENDING job loaded from the store to the jobs it waits on."""
        self._wire_dependencies(job, self._targets(job))
        if job.status is JobStatus.PENDING and job.unmet == 0:
            if job.cancel_reason:
                self.transitions.set_status(job, JobStatus.FAILED, job.cancel_reason)
            else:
                self.transitions.set_status(job, JobStatus.RUNNABLE)

    def _admit(self, job: Job) -> None:
        """SUBMITTED -> PENDING/RUNNABLE; an array parent spawns its children here."""
        if job.status is not JobStatus.SUBMITTED:
            return
        if job.sub.failure:
            self.transitions.set_status(job, JobStatus.FAILED, job.sub.failure)
            return
        self._wire_dependencies(job, self._targets(job))
        if job.status is JobStatus.SUBMITTED:
            if job.unmet:
                self.transitions.set_status(job, JobStatus.PENDING)
            else:
                self._runnable(job)

    def admit_some(self) -> None:
        """Admits queued submissions; a big array spawns its children over several ticks,
        so API calls waiting on the engine lock are never held up for long."""
        budget = SPAWN_BATCH
        while self.admissions and budget > 0:
            job = self.admissions[0]
            size = job.sub.array_size or 0
            if job.is_parent and not job.sub.failure and job.status in (JobStatus.SUBMITTED, JobStatus.PENDING):
                budget -= self._spawn_children(job, budget)
                if job.children is not None and len(job.children) < size:
                    return  # more next tick; later submissions wait, as they may depend on these children
            else:
                self._admit(job)
                budget -= 1
            self.admissions.popleft()

    def _spawn_children(self, parent: Job, budget: int) -> int:
        """Creates up to `budget` more children (PENDING, then RUNNABLE when nothing is unmet)."""
        size = parent.sub.array_size or 0
        now = self.transitions.now()
        if parent.children is None:
            parent.summary = {status: 0 for status in ALL_STATUSES}
            parent.summary["PENDING"] = size  # children not created yet count as PENDING
            parent.summary_at = now
            parent.children = []
            self.transitions.set_status(parent, JobStatus.PENDING)
        start = len(parent.children)
        for index in range(start, min(size, start + budget)):
            child = Job(job_id=f"{parent.job_id}:{index}", sub=parent.sub, index=index,
                        status=JobStatus.PENDING, created_at=now, parent=parent)
            parent.children.append(child)
            self.state.jobs[child.job_id] = child
            self.transitions.touch(child)
            self.transitions.journal(child.job_id, now, wire.snapshot_json(child))
            if parent.cancel_reason:  # the array was cancelled or terminated while it was spawning
                child.is_cancelled, child.is_terminated = parent.is_cancelled, parent.is_terminated
                self.transitions.set_status(child, JobStatus.FAILED, parent.cancel_reason)
                continue
            self._wire_dependencies(child, self._targets(child))
            if child.status is JobStatus.PENDING and not child.unmet:
                self._runnable(child)
        return len(parent.children) - start

    def _runnable(self, job: Job) -> None:
        """PENDING/SUBMITTED -> RUNNABLE; a job with dependencies starts only once their ends are
        committed (they may have ended inside the group-commit window): see SchedulerState.released."""
        self.transitions.set_status(job, JobStatus.RUNNABLE)
        if job.sub.depends_on:
            self.state.note_release(job)

    def _targets(self, job: Job) -> list[Job]:
        """The jobs this job (or array child) waits on, resolved from the submission's dependsOn."""
        targets = []
        for dep in job.sub.depends_on:
            kind = dep.get("type")
            if kind == "SEQUENTIAL":
                if job.index:
                    targets.append(self.state.jobs[f"{job.sub.job_id}:{job.index - 1}"])
                continue
            target = self.state.jobs.get(dep["jobId"])
            if target is None:
                continue  # validated at submit; only an expired job could be missing
            if kind == "N_TO_N" and job.index is not None and target.children is not None \
                    and job.index < len(target.children):
                target = target.children[job.index]
            targets.append(target)
        return targets

    def _wire_dependencies(self, job: Job, targets: list[Job]) -> None:
        for target in targets:
            if target.status is JobStatus.SUCCEEDED:
                continue
            if target.status is JobStatus.FAILED:
                self._fail_chain(job, REASON_DEPENDENCY_FAILED)
                return
            job.unmet += 1
            target.dependents.append(job)

    def on_terminal(self, job: Job) -> None:
        """A job ended: its dependents are released or fail, and an array parent may end with it."""
        if job.status is JobStatus.SUCCEEDED:
            for dependent in job.dependents:
                dependent.unmet -= 1
                if dependent.unmet == 0 and dependent.status in (JobStatus.PENDING, JobStatus.SUBMITTED):
                    if dependent.cancel_reason:
                        dependent.is_cancelled = True
                        self.transitions.set_status(dependent, JobStatus.FAILED, dependent.cancel_reason)
                    else:
                        self._runnable(dependent)
        else:
            for dependent in job.dependents:
                self._fail_chain(dependent, REASON_DEPENDENCY_FAILED)
        job.dependents = []
        parent = job.parent
        if parent is not None and parent.summary is not None and not parent.status.is_terminal:
            done = parent.summary["SUCCEEDED"] + parent.summary["FAILED"]
            if done == parent.sub.array_size:
                parent.stopped_at = self.transitions.now()
                if parent.summary["FAILED"]:
                    self.transitions.set_status(parent, JobStatus.FAILED, REASON_ARRAY_CHILD_FAILED)
                else:
                    self.transitions.set_status(parent, JobStatus.SUCCEEDED)

    def _fail_chain(self, job: Job, reason: str) -> None:
        """Fails a waiting job; its own dependents fail in turn (iteratively: SEQUENTIAL chains are long)."""
        work = [job]
        while work:
            current = work.pop()
            if current.status.is_terminal or current.status in (JobStatus.STARTING, JobStatus.RUNNING):
                continue
            if current.is_parent and current.children:
                work.extend(current.children)
                continue
            dependents, current.dependents = current.dependents, []
            self.transitions.set_status(current, JobStatus.FAILED, current.cancel_reason or reason)
            work.extend(dependents)
