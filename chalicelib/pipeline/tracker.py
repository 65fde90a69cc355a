"""Tracker: turns Batch job state-change events into run/stage status, pipeline events, deferred join submissions and the run's end.

One set of functions for both sides: locally it is subscribed to the engine's event stream,
on AWS a Lambda feeds it from an EventBridge rule (which filters array children out). So:

* stage completion works from **parent and plain job events alone**: for a finished array
  parent, ``ListJobs(arrayJobId, jobStatus=FAILED)`` says which items failed;
* array children's events, when they arrive (locally), only refine item-level progress;
* jobs are mapped to run and stage through the run store (events carry no tags);
* duplicate and out-of-order events are harmless: a job's status only moves forward
  (``RunStore.advance_job``), item states never regress, and every step after that is
  recomputed from the store, so replaying an event changes nothing, except that a
  redelivered end resumes again any wait that holds both its token and its result (the
  delivery that recorded the result may have died before resuming it);
* when a run ends, and what ends it, is decided in ``run_end`` (the tracker only calls it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.pipeline.events import BATCH_DETAIL_TYPE, is_batch_job_event, stage_event
from chalicelib.pipeline.joins import JoinItemsWriter, JoinPlan, plan_deferred
from chalicelib.pipeline.model import PlannedJob
from chalicelib.pipeline.orphan_events import OrphanEvents
from chalicelib.pipeline.payloads import SubmitContext
from chalicelib.pipeline.ports import BatchClient, EventPublisher, RunStore
from chalicelib.pipeline.records import (
    TERMINAL_BATCH_STATUSES,
    ItemResult,
    JobRecord,
    StageRecord,
    StageStatus,
)
from chalicelib.pipeline.run_end import (
    STAGE_FAILED,
    EndPorts,
    StageTimedOutError,
    end_run,
    failure_cause,
    is_tolerated,
    overdue_stages,
    run_verdict,
)
from chalicelib.pipeline.runcontext import RunContext, from_record
from chalicelib.pipeline.submitter import submit_jobs

Clock = Callable[[], int]
QUEUE_BLOCKED_DETAIL_TYPE = "Batch Job Queue Blocked"
BLOCKING_REASON_PREFIX = "MISCONFIGURATION:"  # CAPACITY: reasons clear on their own
CLAIM_LEASE_MS = 300_000  # a deferred join's submission claim; a Lambda runs at most 300 s
PARENT_CACHE_SIZE = 1_000
_RAN = ("STARTING", "RUNNING", "SUCCEEDED")  # a child event that says its stage is running


@dataclass(frozen=True)
class Resume:
    """A wait to resume: both halves (token and stage result) are recorded for ``run_id``/``stage``."""

    run_id: str
    stage: str
    token: str
    result: dict[str, Any]


@dataclass
class TrackerOutcome:
    """What handling one event did: envelopes published, jobs submitted, waits to resume."""

    published: list[dict[str, Any]] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)
    run_finished: bool = False
    blocked: list[str] = field(default_factory=list)  # job ids whose queue is blocked for good

    def absorb(self, other: TrackerOutcome) -> None:
        self.published.extend(other.published)
        self.submitted.extend(other.submitted)
        self.resumes.extend(other.resumes)
        self.run_finished = self.run_finished or other.run_finished


class Tracker:
    """Event handler bound to its ports; caches run contexts (they never change)."""

    def __init__(
        self,
        *,
        store: RunStore,
        batch: BatchClient,
        publisher: EventPublisher,
        join_items: JoinItemsWriter,
        clock: Clock,
        enforce_deadlines: bool = False,
    ) -> None:
        """``enforce_deadlines``: ``reconcile`` ends a run whose stage waited past its ``wait_timeout``
        (local runs; on AWS the state machine's wait timeouts do that)."""
        self._enforce_deadlines = enforce_deadlines
        self._store = store
        self._batch = batch
        self._publisher = publisher
        self._join_items = join_items
        self._clock = clock
        self._ending = EndPorts(store=store, batch=batch, publisher=publisher, clock=clock)
        self._contexts: dict[str, RunContext] = {}
        self._orphans = OrphanEvents()
        self._parents: dict[str, JobRecord] = {}  # recorded array parents, for their children's events
        # Events of one run are settled one at a time within a process.
        self._lock = threading.RLock()

    def handle(self, envelope: dict[str, Any]) -> TrackerOutcome:
        """Handles one ``Batch Job State Change`` envelope; anything else is ignored."""
        return self.handle_many([envelope])

    def handle_many(self, envelopes: Sequence[dict[str, Any]]) -> TrackerOutcome:
        """Handles envelopes in order, each as ``handle`` would; the item results of consecutive
        array-child events (a page of the engine's feed holds hundreds) are written in one store call.

        An event of a job not recorded yet (the engine ran it before the submitter recorded it)
        is kept and replayed once the job is found (see ``orphan_events``).
        """
        outcome = TrackerOutcome()
        with self._lock:
            children: list[tuple[JobRecord, int, dict[str, Any]]] = []
            for envelope in envelopes:
                if not is_batch_job_event(envelope):
                    continue
                detail = envelope["detail"]
                job_id, index = _split_child(detail)
                job = self._recorded(job_id, index, detail, outcome)
                if job is None:
                    continue
                if index is not None:
                    if not job.is_barrier:  # a barrier's children are no items
                        children.append((job, index, detail))
                    continue
                self._flush_children(children, outcome)
                self._on_job(job, detail, outcome)
            self._flush_children(children, outcome)
        return outcome

    def _recorded(
        self, job_id: str, index: int | None, detail: dict[str, Any], outcome: TrackerOutcome
    ) -> JobRecord | None:
        """The job (a child's parent) as recorded now, after replaying events kept while it was not."""
        job = self._parents.get(job_id) if index is not None else None
        if job is not None:
            return job
        job = self._store.find_job(job_id)
        if job is None:
            self._orphans.keep(job_id, index, detail, self._clock())
            return None
        kept = self._orphans.take(job_id)
        if kept:
            outcome.absorb(self.handle_many(kept))
            job = self._store.find_job(job_id) or job  # the replayed events may have moved it
        if job.is_array and index is not None:
            if len(self._parents) >= PARENT_CACHE_SIZE:
                self._parents.clear()
            self._parents[job_id] = job  # children read only what never changes: run, stage, offset
        return job

    def _on_job(self, job: JobRecord, detail: dict[str, Any], outcome: TrackerOutcome) -> None:
        """A plain job's or an array parent's event."""
        status = str(detail.get("status", ""))
        ends = status in TERMINAL_BATCH_STATUSES
        if ends and job.status not in TERMINAL_BATCH_STATUSES and not job.is_barrier:
            # Item results are stored before the job's own status moves, so a handler that
            # dies in between is completed by the redelivered event (results never regress).
            self._store.put_item_results(self._job_results(job, detail))
        advanced = self._store.advance_job(
            job.job_id, status, reason=str(detail.get("statusReason", "")),
            started_at=detail.get("startedAt"), stopped_at=detail.get("stoppedAt"),
        )
        if not advanced:
            if ends and job.status in TERMINAL_BATCH_STATUSES:
                # A redelivered end: make sure what it should have caused happened,
                # including resuming waits the first delivery recorded but never resumed.
                self.settle(job.run_id, outcome)
                self._resume_recorded_waits(self._context(job.run_id), outcome)
            return
        ctx = self._context(job.run_id)
        if status in ("STARTING", "RUNNING") and not job.is_barrier:
            self._mark_stage_running(ctx, job.stage, outcome)
        if ends:
            self.settle(ctx.run.run_id, outcome)

    def queue_blocked(self, envelope: dict[str, Any]) -> TrackerOutcome:
        """A ``Batch Job Queue Blocked`` event: fails the blocked jobs' stage waits on a misconfiguration.

        Batch says why a job blocks its queue: ``MISCONFIGURATION:...`` (e.g. no compute
        environment can ever run it) will not clear on its own, so the wait fails with Batch's
        reason; ``CAPACITY:...`` is temporary (instances still coming), so the job keeps waiting.
        """
        outcome = TrackerOutcome()
        reason = str((envelope.get("detail") or {}).get("statusReason") or "job queue blocked")
        if not reason.startswith(BLOCKING_REASON_PREFIX):
            return outcome
        with self._lock:
            for arn in envelope.get("resources", []):
                job = self._store.find_job(str(arn).rsplit("/", 1)[-1]) if ":job/" in str(arn) else None
                if job is None:
                    continue
                result = {"stage": job.stage, "status": StageStatus.FAILED.value, "reason": f"job queue blocked: {reason}"}
                wait = self._store.put_stage_result(job.run_id, job.stage, result)
                outcome.blocked.append(job.job_id)
                if wait.completed and wait.token is not None and wait.result is not None:
                    outcome.resumes.append(Resume(job.run_id, job.stage, wait.token, wait.result))
        return outcome

    def reconcile(self, run_id: str) -> TrackerOutcome:
        """Feeds the current DescribeJobs state of the run's unfinished jobs through ``handle``.

        Closes the gap between SubmitJob and the record (an event for a job not recorded yet
        is ignored), and is the polling fallback when no event stream is available. It also
        resumes every wait that holds both token and result. When the tracker enforces deadlines
        (local runs), a stage still unfinished past its ``wait_timeout`` ends the run as a
        timed-out wait does on AWS.
        """
        outcome = TrackerOutcome()
        with self._lock:
            for job_id in self._orphans.job_ids():  # kept events of jobs recorded since
                if self._store.find_job(job_id) is not None:
                    outcome.absorb(self.handle_many(self._orphans.take(job_id)))
        pending = [j.job_id for j in self._store.list_jobs(run_id) if j.status not in TERMINAL_BATCH_STATUSES]
        for start in range(0, len(pending), 100):  # DescribeJobs takes at most 100 ids
            for job in self._batch.describe_jobs(jobs=pending[start : start + 100]).get("jobs", []):
                envelope = {"detail-type": BATCH_DETAIL_TYPE, "source": "aws.batch", "detail": job}
                outcome.absorb(self.handle(envelope))
        self.settle(run_id, outcome)
        with self._lock:
            ctx = self._context(run_id)
            self._resume_recorded_waits(ctx, outcome)
            overdue = overdue_stages(ctx, self._store, self._clock()) if self._enforce_deadlines else []
            if overdue:
                reason = f"{StageTimedOutError.__name__}: stage {overdue[0]}: still running when its wait timed out"
                self._finish(ctx, outcome, reason=reason)
        return outcome

    def _resume_recorded_waits(self, ctx: RunContext, outcome: TrackerOutcome) -> None:
        """Resumes waits of ended stages again: their result is written again, so a recorded token meets it."""
        known = {(r.stage, r.token) for r in outcome.resumes}
        for record in self._store.list_stages(ctx.run.run_id):
            if not record.status.is_terminal:
                continue
            wait = self._store.put_stage_result(ctx.run.run_id, record.stage, _stage_result(record))
            if wait.completed and wait.token is not None and (record.stage, wait.token) not in known:
                outcome.resumes.append(Resume(ctx.run.run_id, record.stage, wait.token, wait.result or {}))

    # -- item results ---------------------------------------------------------------------

    def _flush_children(self, children: list[tuple[JobRecord, int, dict[str, Any]]], outcome: TrackerOutcome) -> None:
        """Writes the item results of array-child events, then marks their stages running."""
        if not children:
            return
        self._store.put_item_results([_result(parent, parent.offset + index, detail) for parent, index, detail in children])
        # A child that succeeded ran too: its RUNNING event may have been kept as an orphan and
        # replaced by the furthest status.
        ran = {(parent.run_id, parent.stage) for parent, _, detail in children if detail.get("status") in _RAN}
        children.clear()
        for run_id, stage in sorted(ran):
            self._mark_stage_running(self._context(run_id), stage, outcome)

    def _job_results(self, job: JobRecord, detail: dict[str, Any]) -> list[ItemResult]:
        """Item results of a finished stage job, from its own event (plus ListJobs for arrays)."""
        ctx = self._context(job.run_id)
        base = job.offset if ctx.plan.stage(job.stage).foreach else 0
        if not job.is_array:
            return [_result(job, base, detail)]
        if detail.get("status") == "SUCCEEDED":
            return [
                ItemResult(job.run_id, job.stage, base + i, "SUCCEEDED", f"{job.job_id}:{i}")
                for i in range(job.size)
            ]
        failed = {int(s["arrayProperties"]["index"]): s for s in self._failed_children(job)}
        if not failed:
            # The array failed before its children ran (e.g. its dependency failed).
            return [_result(job, base + i, detail, job_id=f"{job.job_id}:{i}") for i in range(job.size)]
        results = []
        for i in range(job.size):
            summary = failed.get(i)
            if summary is None:
                results.append(ItemResult(job.run_id, job.stage, base + i, "SUCCEEDED", f"{job.job_id}:{i}"))
            else:
                results.append(_result(job, base + i, summary, job_id=str(summary["jobId"])))
        return results

    def _failed_children(self, job: JobRecord) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"arrayJobId": job.job_id, "jobStatus": "FAILED"}
            if token:
                kwargs["nextToken"] = token
            page = self._batch.list_jobs(**kwargs)
            summaries.extend(
                s for s in page.get("jobSummaryList", []) if "index" in s.get("arrayProperties", {})
            )
            token = page.get("nextToken")
            if not token:
                return summaries

    # -- stages, deferred joins, run end --------------------------------------------------

    def settle(self, run_id: str, outcome: TrackerOutcome | None = None) -> TrackerOutcome:
        """Submits ready deferred jobs, ends finished stages and the run; safe to repeat."""
        outcome = outcome or TrackerOutcome()
        with self._lock:
            ctx = self._context(run_id)
            progressed = True
            while progressed:
                run = self._store.get_run(run_id)
                # An ended run (cancelled, or a stage failed) submits nothing more.
                progressed = run is not None and not run.status.is_terminal and self._submit_ready(ctx, outcome)
                progressed = self._end_stages(ctx, outcome) or progressed
            self._end_run(ctx, outcome)
        return outcome

    def _submit_ready(self, ctx: RunContext, outcome: TrackerOutcome) -> bool:
        jobs = {j.key: j for j in self._store.list_jobs(ctx.run.run_id)}
        stages = {s.stage: s for s in self._store.list_stages(ctx.run.run_id)}
        decision: JoinPlan = plan_deferred(ctx, jobs, stages, self._store)
        for stage, reason in decision.skipped.items():
            self._skip_stage(ctx, stage, reason, outcome)
        run = self._store.get_run(ctx.run.run_id)
        if run is not None and run.status.is_terminal:
            return bool(decision.skipped)  # a cancelled run submits nothing more
        now = self._clock()
        ready: list[PlannedJob] = [
            # ListJobs, the submitter's duplicate check, is eventually consistent on AWS: two
            # trackers settling at once could both submit; the store's conditional write decides.
            job for job in decision.ready
            if self._store.claim_submission(ctx.run.run_id, job.key, now_ms=now, lease_ms=CLAIM_LEASE_MS)
        ]
        if not ready:
            return bool(decision.skipped)
        join_items = dict(ctx.submit.join_items)
        for stage, indexes in decision.join_indexes.items():
            join_items[stage] = self._join_items(ctx, stage, indexes)
        submit = _with_join_items(ctx, join_items)
        submitted = submit_jobs(
            ctx.spec, ctx.plan, ready, batch=self._batch, store=self._store, ctx=submit
        )
        outcome.submitted.extend(job.key for job in ready if job.key in submitted)
        for stage in {job.stage for job in ready}:
            self._put_stage(ctx, stage, StageStatus.SUBMITTED, outcome)
        return True

    def _skip_stage(self, ctx: RunContext, stage: str, reason: str, outcome: TrackerOutcome) -> None:
        count = ctx.stage_items(stage)
        self._store.put_item_results(
            [ItemResult(ctx.run.run_id, stage, i, "FAILED", "", reason) for i in range(count)]
        )
        self._put_stage(ctx, stage, StageStatus.FAILED, outcome, ended=True)

    def _end_stages(self, ctx: RunContext, outcome: TrackerOutcome) -> bool:
        jobs = {j.key: j for j in self._store.list_jobs(ctx.run.run_id)}
        ended = False
        for stage in ctx.plan.stage_order:
            record = self._store.get_stage(ctx.run.run_id, stage)
            if record is not None and record.status.is_terminal:
                continue
            own = ctx.plan.jobs_for_stage(stage)
            if not all(j.key in jobs and jobs[j.key].status in TERMINAL_BATCH_STATUSES for j in own):
                continue
            results = self._store.list_item_results(ctx.run.run_id, stage)
            ok = len(results) >= ctx.stage_items(stage) and all(r.status == "SUCCEEDED" for r in results)
            status = StageStatus.SUCCEEDED if ok else StageStatus.FAILED
            self._put_stage(ctx, stage, status, outcome, ended=True)
            ended = True
        return ended

    def _end_run(self, ctx: RunContext, outcome: TrackerOutcome) -> None:
        """Ends the run once every stage ended, or at the first stage failure nothing tolerates."""
        run = self._store.get_run(ctx.run.run_id)
        if run is None or run.status.is_terminal:
            return
        verdict = run_verdict(ctx, self._store)
        if verdict is not None:
            status, failures = verdict
            self._finish(ctx, outcome, status=status, failures=failures)
            return
        for record in self._store.list_stages(ctx.run.run_id):
            if record.status is StageStatus.FAILED and not is_tolerated(ctx.spec, record.stage):
                # As a failed wait does on AWS: the run ends now and its other jobs are terminated.
                cause = failure_cause(self._store, ctx.run.run_id, record.stage, _stage_result(record))
                self._finish(ctx, outcome, reason=f"{STAGE_FAILED}: {cause}")
                return

    def _finish(self, ctx: RunContext, outcome: TrackerOutcome, **how: Any) -> None:
        end = end_run(self._ending, ctx.run.run_id, **how)
        if end.event is not None:
            outcome.published.append(end.event)
        outcome.run_finished = outcome.run_finished or end.ended

    def _mark_stage_running(self, ctx: RunContext, stage: str, outcome: TrackerOutcome) -> None:
        record = self._store.get_stage(ctx.run.run_id, stage)
        if record is None or record.status in (StageStatus.SUBMITTED, StageStatus.WAITING):
            self._put_stage(ctx, stage, StageStatus.RUNNING, outcome)

    def _put_stage(
        self, ctx: RunContext, stage: str, status: StageStatus, outcome: TrackerOutcome, *, ended: bool = False
    ) -> None:
        now = self._clock()
        previous = self._store.get_stage(ctx.run.run_id, stage)
        counts: dict[str, int] = {}
        for result in self._store.list_item_results(ctx.run.run_id, stage):
            counts[result.status] = counts.get(result.status, 0) + 1
        started = previous.started_at if previous and previous.started_at else None
        if started is None and (status is StageStatus.RUNNING or ended):
            started = now
        record = StageRecord(
            run_id=ctx.run.run_id, stage=stage, status=status, items=ctx.stage_items(stage),
            counts=counts, started_at=started, ended_at=now if ended else None,
            deferred=previous.deferred if previous else False,
        )
        self._store.put_stage(record)
        self._publish(outcome, stage_event(ctx.run, record, now_ms=now))
        if ended:
            wait = self._store.put_stage_result(ctx.run.run_id, stage, _stage_result(record))
            if wait.completed and wait.token is not None and wait.result is not None:
                outcome.resumes.append(Resume(ctx.run.run_id, stage, wait.token, wait.result))

    def _publish(self, outcome: TrackerOutcome, envelope: dict[str, Any]) -> None:
        outcome.published.append(envelope)
        self._publisher.publish([envelope])

    def _context(self, run_id: str) -> RunContext:
        ctx = self._contexts.get(run_id)
        if ctx is None:
            run = self._store.get_run(run_id)
            if run is None:
                raise KeyError(f"unknown run {run_id!r}")
            ctx = self._contexts[run_id] = from_record(run)
        return ctx


def _stage_result(record: StageRecord) -> dict[str, Any]:
    """What a stage's wait resumes with (the same on every write, so rewriting it is harmless)."""
    return {"stage": record.stage, "status": record.status.value, "counts": dict(record.counts)}


def _split_child(detail: dict[str, Any]) -> tuple[str, int | None]:
    """(parent id, index) for an array child's event, (job id, None) otherwise."""
    job_id = str(detail.get("jobId", ""))
    index = detail.get("arrayProperties", {}).get("index")
    if ":" in job_id and index is not None:
        return job_id.rsplit(":", 1)[0], int(index)
    return job_id, None


def _result(
    job: JobRecord, index: int, detail: dict[str, Any], *, job_id: str | None = None
) -> ItemResult:
    container = detail.get("container") or {}
    exit_code = container.get("exitCode")
    reason = str(detail.get("statusReason") or "")
    if container.get("reason"):
        reason = f"{reason}: {container['reason']}" if reason else str(container["reason"])
    return ItemResult(
        run_id=job.run_id, stage=job.stage, index=index, status=str(detail.get("status", "")),
        job_id=job_id or str(detail.get("jobId", job.job_id)), reason=reason,
        exit_code=int(exit_code) if exit_code is not None else None,
    )


def _with_join_items(ctx: RunContext, join_items: dict[str, str]) -> SubmitContext:
    return replace(ctx.submit, join_items=join_items)

