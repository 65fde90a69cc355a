"""A run's end: how long a stage may wait, which stage failures are tolerated, and the one function that ends a run.

Every decision about the end of a stage's wait or of a run lives here, with time from an
injected clock, and both sides call it:

* the tracker (fed by the local engine's events, or by the AWS tracker Lambda) ends a run
  when its last stage ends, or as soon as a stage fails that nothing downstream tolerates,
  and ends it when a stage has waited longer than ``wait_timeout`` (``overdue_stages``);
* the state machine's tasks on AWS (``handlers/state_machine_tasks.py``) only translate:
  ``wait_verdict`` picks SendTaskSuccess or SendTaskFailure, ``stage_after_wait`` decides a
  reconcile, ``finish_run`` a finalize, ``end_run`` a cleanup or a stopped execution;
* a user's cancel (``conveyor cancel``, Ctrl-C, ``POST /runs/{id}/cancel``) calls ``cancel_run``.

``end_run`` is the only place a run is marked ended, and ``publish_run_state`` the only place a
``Pipeline Run State Change`` event is built: on AWS the publisher is EventBridge PutEvents,
locally the in-memory publisher that appends each envelope to ``pipeline-events.jsonl``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.events import run_event
from chalicelib.pipeline.model import PipelineSpec
from chalicelib.pipeline.ports import BatchClient, EventPublisher, RunStore
from chalicelib.pipeline.records import TERMINAL_BATCH_STATUSES, RunRecord, RunStatus, StageStatus
from chalicelib.pipeline.runcontext import RunContext
from chalicelib.pipeline.submitter import terminate_run

DEFAULT_WAIT_S = 7 * 24 * 3600  # a stage without timeouts may wait a week, then reconcile
QUEUE_SLACK_S = 3600
FAILURES_KEPT = 50  # run record (DynamoDB: 400 KB per item) and run event (EventBridge: 256 KB)
REASON_CHARS = 1000
CAUSE_CHARS = 30000  # Step Functions' limit on an error cause is 32,768 characters
DEPENDENCY_FAILED = "Dependent Job failed"
STAGE_FAILED = "StageFailed"  # the error a failed wait raises in the state machine (SendTaskFailure)


class StageFailedError(PipelineError):
    """A stage ended FAILED and nothing downstream tolerates it (name used in the ASL)."""


class StageTimedOutError(PipelineError):
    """A stage's wait timed out and DescribeJobs shows it still running (name used in the ASL)."""


class RunFailedError(PipelineError):
    """Finalize found the run FAILED, e.g. a tolerated stage left failed items (name used in the ASL)."""


class RunEndPorts(Protocol):
    """What ending a run needs (``runs.RunPorts`` and ``EndPorts`` both have it)."""

    @property
    def store(self) -> RunStore: ...

    @property
    def batch(self) -> BatchClient: ...

    @property
    def publisher(self) -> EventPublisher: ...

    @property
    def clock(self) -> Callable[[], int]: ...


@dataclass(frozen=True)
class EndPorts:
    store: RunStore
    batch: BatchClient
    publisher: EventPublisher
    clock: Callable[[], int]


@dataclass(frozen=True)
class RunEnd:
    """What ``end_run`` did: the run's status after it, whether this call ended it, jobs terminated."""

    run_id: str
    status: RunStatus | None  # None: no such run
    ended: bool = False
    terminated: list[str] = field(default_factory=list)
    event: dict[str, Any] | None = None  # the run event published when this call ended it


# -- waits -----------------------------------------------------------------------------------


def wait_timeout(spec: PipelineSpec, stage_name: str) -> int:
    """Seconds a stage's wait may last: its attempts' timeouts along its upstream chain, plus queue slack."""
    total, pending, seen = 0, [stage_name], set()
    while pending:
        stage = spec.stage(pending.pop())
        if stage.name in seen:
            continue
        seen.add(stage.name)
        if stage.timeout is None:
            return DEFAULT_WAIT_S
        total += stage.timeout * stage.retry.attempts
        pending.extend(stage.after)
    return total + QUEUE_SLACK_S * len(seen)


def overdue_stages(ctx: RunContext, store: RunStore, now_ms: int) -> list[str]:
    """Unfinished stages whose wait (from the run's creation) has lasted longer than ``wait_timeout``."""
    started = ctx.run.created_at
    ended = {s.stage for s in store.list_stages(ctx.run.run_id) if s.status.is_terminal}
    return [
        name for name in ctx.plan.stage_order
        if name not in ended and now_ms - started > wait_timeout(ctx.spec, name) * 1000
    ]


def is_tolerated(spec: PipelineSpec, stage: str) -> bool:
    """True when a stage downstream runs on the items that succeeded (``allow_failed_items``).

    Failed items flow on through ``foreach`` stages (each fails on the same items, by
    dependency), so a failure is tolerated when such a stage is reached directly or through
    ``foreach`` stages only; a join without ``allow_failed_items`` on the way fails on its own.
    """
    pending, seen = [stage], set()
    while pending:
        current = pending.pop()
        for downstream in spec.stages:
            if current not in downstream.after or downstream.name in seen:
                continue
            if downstream.allow_failed_items:
                return True
            seen.add(downstream.name)
            if downstream.foreach:
                pending.append(downstream.name)
    return False


def failure_cause(store: RunStore, run_id: str, stage: str, result: dict[str, Any]) -> str:
    """``stage align: 2 of 10 items failed (first: item 3: <reason>)``."""
    if result.get("reason"):
        return f"stage {stage}: {result['reason']}"[:CAUSE_CHARS]
    failed = [r for r in store.list_item_results(run_id, stage) if r.status == "FAILED"]
    counts = result.get("counts") or {}
    total = sum(int(v) for v in counts.values()) or len(failed)
    head = f"stage {stage}: {len(failed) or counts.get('FAILED', 0)} of {total} items failed"
    if failed:
        first = min(failed, key=lambda r: r.index)
        detail = first.reason or (f"exit code {first.exit_code}" if first.exit_code is not None else "failed")
        head += f" (first: item {first.index}: {detail})"
    return head[:CAUSE_CHARS]


@dataclass(frozen=True)
class WaitVerdict:
    """How a stage's wait resumes: success with ``output``, or failure (StageFailed) with ``cause``."""

    failed: bool
    output: dict[str, Any]
    cause: str = ""


def wait_verdict(spec: PipelineSpec, store: RunStore, run_id: str, result: dict[str, Any]) -> WaitVerdict:
    """A FAILED stage fails its wait unless a stage downstream tolerates it; anything else succeeds."""
    stage = str(result.get("stage", ""))
    if result.get("status") == StageStatus.FAILED.value and not is_tolerated(spec, stage):
        return WaitVerdict(failed=True, output=result, cause=failure_cause(store, run_id, stage, result))
    return WaitVerdict(failed=False, output=result)


def stage_after_wait(spec: PipelineSpec, store: RunStore, run_id: str, stage: str, *,
                     final: bool = True) -> dict[str, Any]:
    """A stage's state once its wait ended or timed out (after a DescribeJobs round).

    Returns ``{"stage", "status"}``. With ``final`` (its whole wait timed out) a stage still
    unfinished raises StageTimedOutError; without it (a periodic check) it is returned as is.

    Raises:
        StageFailedError: the stage FAILED and nothing downstream tolerates it.
        StageTimedOutError: ``final`` and the stage has not ended.
    """
    record = store.get_stage(run_id, stage)
    status = record.status if record is not None else None
    if status is StageStatus.FAILED and not is_tolerated(spec, stage):
        raise StageFailedError(failure_cause(store, run_id, stage, {"stage": stage, "counts": record.counts}))
    if status is not None and (status.is_terminal or not final):
        return {"stage": stage, "status": status.value}
    raise StageTimedOutError(f"stage {stage}: still {status.value if status else 'unknown'} when its wait timed out")


# -- the run's end -----------------------------------------------------------------------------


def run_verdict(ctx: RunContext, store: RunStore) -> tuple[RunStatus, list[dict[str, Any]]] | None:
    """The run's status once every stage ended (None before), with one failure entry per failed item."""
    stages = store.list_stages(ctx.run.run_id)
    if len(stages) < len(ctx.plan.stage_order) or not all(s.status.is_terminal for s in stages):
        return None
    failures = item_failures(store, ctx.run.run_id)
    failed = failures or any(s.status is StageStatus.FAILED for s in stages)
    return (RunStatus.FAILED if failed else RunStatus.SUCCEEDED), failures


def item_failures(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    return [
        {"stage": r.stage, "item": r.index, "reason": r.reason, "jobId": r.job_id,
         "exitCode": r.exit_code, "dependency": r.reason == DEPENDENCY_FAILED}
        for r in store.list_item_results(run_id) if r.status == "FAILED"
    ]


def bound_failures(failures: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first ``FAILURES_KEPT`` failures with reasons cut to ``REASON_CHARS`` (the count is kept apart)."""
    return [
        {**f, "reason": str(f.get("reason", ""))[:REASON_CHARS]} if len(str(f.get("reason", ""))) > REASON_CHARS
        else dict(f)
        for f in failures[:FAILURES_KEPT]
    ]


def end_run(
    ports: RunEndPorts,
    run_id: str,
    *,
    status: RunStatus = RunStatus.FAILED,
    reason: str = "",
    failures: Sequence[dict[str, Any]] | None = None,
) -> RunEnd:
    """Ends a run: terminates its unfinished jobs, records it ended, publishes its run event. Safe to repeat.

    Jobs are terminated even when the run is already marked ended (another caller may have
    decided first); TerminateJob on a finished job changes nothing. ``reason`` (a run-level
    cause, e.g. ``StageFailedError: stage a: ...``) comes first in the failure list, before
    ``failures`` (default: the item failures recorded so far); only the first ones are kept.
    """
    run = ports.store.get_run(run_id)
    if run is None:
        return RunEnd(run_id, None)
    terminated = terminate_run(ports.batch, ports.store, run_id, reason or f"run {status.value.lower()}")
    if run.status.is_terminal:
        return RunEnd(run_id, run.status, ended=False, terminated=terminated)
    entries = list(failures if failures is not None else item_failures(ports.store, run_id))
    if reason:
        entries.insert(0, {"stage": "", "item": None, "reason": reason, "jobId": "", "exitCode": None,
                           "dependency": False})
    ports.store.update_run(run_id, status=status, ended_at=ports.clock(), failures=bound_failures(entries),
                           failure_count=len(entries))
    event = publish_run_state(ports, run_id)
    return RunEnd(run_id, status, ended=True, terminated=terminated, event=event)


def cancel_run(ports: RunEndPorts, run_id: str, reason: str = "") -> RunEnd:
    """A user's cancel: ends the run FAILED with ``cancelled: <reason>`` (what Ctrl-C, CLI and API call).

    Stages that never got a job (joins the tracker will not submit for an ended run) end
    FAILED too, so the run's view shows nothing still waiting. Safe to repeat: a job submitted
    while an earlier cancel ran is terminated by the next call.
    """
    ended = end_run(ports, run_id, reason=f"cancelled: {reason}" if reason else "cancelled")
    if ended.status is not None:
        end_unsubmitted_stages(ports, run_id)
    return ended


def end_unsubmitted_stages(ports: RunEndPorts, run_id: str) -> list[str]:
    """Ends FAILED the stages of an ended run that never got a job; returns their names."""
    submitted = {job.stage for job in ports.store.list_jobs(run_id)}
    ended: list[str] = []
    for record in ports.store.list_stages(run_id):
        if record.status.is_terminal or record.stage in submitted:
            continue
        ports.store.put_stage(replace(record, status=StageStatus.FAILED, ended_at=ports.clock()))
        ended.append(record.stage)
    return ended


def unfinished_jobs(ports: RunEndPorts, run_id: str) -> list[str]:
    """Ids of the run's recorded jobs that Batch itself does not report ended (DescribeJobs, not the record)."""
    pending = [j.job_id for j in ports.store.list_jobs(run_id) if j.status not in TERMINAL_BATCH_STATUSES]
    alive: list[str] = []
    for start in range(0, len(pending), 100):  # DescribeJobs takes at most 100 ids
        for job in ports.batch.describe_jobs(jobs=pending[start : start + 100]).get("jobs", []):
            if job.get("status") not in TERMINAL_BATCH_STATUSES:
                alive.append(str(job["jobId"]))
    return alive


def finish_run(ports: RunEndPorts, run_id: str) -> RunRecord:
    """Every stage's wait ended: the run SUCCEEDED unless it was recorded FAILED (the finalize decision).

    Raises:
        PipelineError: no such run. RunFailedError: the run is FAILED (its failures are the cause).
    """
    run = ports.store.get_run(run_id)
    if run is None:
        raise PipelineError(f"no run {run_id!r}")
    if run.status is RunStatus.FAILED:
        raise RunFailedError(failed_run_cause(run))
    if not run.status.is_terminal:
        end_run(ports, run_id, status=RunStatus.SUCCEEDED, failures=[])
    final = ports.store.get_run(run_id)
    assert final is not None
    return final


def failed_run_cause(run: RunRecord) -> str:
    cause = "; ".join(str(f.get("reason", f)) for f in run.failures)
    more = run.failure_count - len(run.failures)
    if more > 0:
        cause += f"; and {more} more failures"
    return cause[:CAUSE_CHARS] or "run failed"


def publish_run_state(ports: RunEndPorts, run_id: str) -> dict[str, Any] | None:
    """Publishes the run's ``Pipeline Run State Change`` event (the only place one is built); returns it."""
    run = ports.store.get_run(run_id)
    if run is None:
        return None
    envelope = run_event(run, ports.store.list_stages(run_id), now_ms=ports.clock())
    ports.publisher.publish([envelope])
    return envelope
