"""Job events that arrived before their job was recorded, kept a while so the tracker can replay them.

The submitter records a job right after SubmitJob returns, but the engine may already have
started it: under load an array's children can be RUNNING, or even ended, before their parent
is in the run store. The tracker ignored those events, so the stage showed SUBMITTED while its
items ran, and their item results waited for the parent's end. It now keeps them here, keyed
by the job (a child's under its parent), and replays them once the job is found: at its next
event, a child's event, or the tracker's periodic reconcile.

Bounded: per job and child only the furthest status is kept (trimmed to the fields the tracker
reads), at most ``limit`` events and ``job_limit`` jobs in all (the reconcile looks each kept job
up), each job's for at most ``ttl_ms``. Events of jobs that never become a run's (jobs submitted
to a shared engine by hand) age out. Losing one costs only early progress: the job's own end, or
the reconcile's DescribeJobs, still says how it went.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from chalicelib.pipeline.events import BATCH_DETAIL_TYPE
from chalicelib.pipeline.records import is_forward

DEFAULT_LIMIT = 20_000
DEFAULT_JOB_LIMIT = 1_000
DEFAULT_TTL_MS = 600_000


def trimmed(detail: dict[str, Any]) -> dict[str, Any]:
    """The parts of a job event's detail the tracker reads (a full one is kilobytes: its command, env...)."""
    kept = {k: detail[k] for k in ("jobId", "status", "statusReason", "startedAt", "stoppedAt") if k in detail}
    index = (detail.get("arrayProperties") or {}).get("index")
    if index is not None:
        kept["arrayProperties"] = {"index": index}
    container = detail.get("container") or {}
    outcome = {k: container[k] for k in ("exitCode", "reason") if container.get(k) is not None}
    if outcome:
        kept["container"] = outcome
    return kept


class OrphanEvents:
    """Events per unrecorded job id: ``keep`` one, ``take`` them all (as envelopes) once it is recorded."""

    def __init__(self, *, limit: int = DEFAULT_LIMIT, job_limit: int = DEFAULT_JOB_LIMIT,
                 ttl_ms: int = DEFAULT_TTL_MS) -> None:
        self._limit = limit
        self._job_limit = job_limit
        self._ttl_ms = ttl_ms
        # job id -> (when its first event was kept, {child index or None: detail}), oldest first
        self._jobs: OrderedDict[str, tuple[int, dict[int | None, dict[str, Any]]]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def job_ids(self) -> list[str]:
        return list(self._jobs)

    def keep(self, job_id: str, index: int | None, detail: dict[str, Any], now_ms: int) -> None:
        """Keeps the event of ``job_id`` (its child ``index``), unless one further on is kept already."""
        self._expire(now_ms)
        first, events = self._jobs.get(job_id) or (now_ms, {})
        earlier = events.get(index)
        if earlier is not None and not is_forward(str(earlier.get("status")), str(detail.get("status"))):
            return
        if earlier is None:
            self._count += 1
        events[index] = trimmed(detail)
        self._jobs[job_id] = (first, events)
        while self._count > self._limit or len(self._jobs) > self._job_limit:
            _, (_, dropped) = self._jobs.popitem(last=False)
            self._count -= len(dropped)

    def take(self, job_id: str) -> list[dict[str, Any]]:
        """The kept events of ``job_id`` as Batch job state-change envelopes, forgetting them."""
        _, events = self._jobs.pop(job_id, (0, {}))
        self._count -= len(events)
        return [{"detail-type": BATCH_DETAIL_TYPE, "source": "aws.batch", "detail": detail}
                for detail in events.values()]

    def _expire(self, now_ms: int) -> None:
        while self._jobs:
            job_id, (first, events) = next(iter(self._jobs.items()))
            if now_ms - first < self._ttl_ms:
                return
            del self._jobs[job_id]
            self._count -= len(events)
