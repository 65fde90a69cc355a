"""Rebuilds the scheduler's in-memory state from the store when an engine starts."""

from __future__ import annotations

from chalicelib.localbatch.model import ALL_STATUSES, Job, JobStatus
from chalicelib.localbatch.scheduling.scheduler import Scheduler
from chalicelib.localbatch.storage.store import Store


def load_state(scheduler: Scheduler, store: Store) -> list[Job]:
    """Loads everything; returns the jobs whose attempts were alive when the last engine stopped."""
    for ce in store.load_compute_environments():
        scheduler.ces[ce.name] = ce
    for queue in store.load_queues():
        scheduler.queues[queue.name] = queue
    for jd in store.load_job_definitions():
        scheduler.job_definitions.setdefault(jd.name, []).append(jd)
    subs = {sub.job_id: sub for sub in store.load_submissions()}
    lost: list[Job] = []
    pending: list[Job] = []
    spawning: list[Job] = []
    for job_id, parent_id, index, status, state in store.load_jobs():
        sub = subs[job_id if parent_id is None else parent_id]
        job = Job(job_id=job_id, sub=sub, index=index, status=JobStatus(status), created_at=state["created_at"])
        for name, value in state.items():
            setattr(job, name, value)
        scheduler.jobs[job_id] = job
        if parent_id is None:
            scheduler.top_level.append(job)
        else:
            parent = scheduler.jobs[parent_id]
            job.parent = parent
            if parent.children is None:
                parent.children = []
                parent.summary = {s: 0 for s in ALL_STATUSES}
            parent.children.append(job)
            assert parent.summary is not None
            parent.summary[status] += 1
        if job.status is JobStatus.SUBMITTED:
            scheduler.admissions.append(job)
        elif job.status is JobStatus.PENDING and job.is_parent:
            # Its children may be half spawned (big arrays spawn over several ticks): resume,
            # in submission order, ahead of later submissions that may depend on them.
            scheduler.admissions.append(job)
            spawning.append(job)
        elif job.status is JobStatus.PENDING and not job.is_parent:
            pending.append(job)
        elif job.status is JobStatus.RUNNABLE:
            scheduler.requeue(job)
        elif job.status in (JobStatus.STARTING, JobStatus.RUNNING):
            lost.append(job)
    for parent in spawning:
        if parent.summary is not None:  # children not created yet count as PENDING
            parent.summary["PENDING"] += (parent.sub.array_size or 0) - len(parent.children or [])
    for job in pending:
        scheduler.rewire(job)
    return lost
