"""Cancelling a run: the one decision behind `conveyor cancel`, Ctrl-C on `conveyor run` and the AWS cancel route.

Every unfinished job of the run gets TerminateJob (Batch cancels a job that has not started
and stops one that has), the run is recorded FAILED with the reason as its failure, and its
state change is published. Stages settle as the jobs' end events arrive; the tracker submits
nothing more for an ended run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chalicelib.pipeline.events import run_event
from chalicelib.pipeline.records import TERMINAL_BATCH_STATUSES, RunStatus, StageStatus
from chalicelib.pipeline.runs import RunNotFoundError, RunPorts
from chalicelib.pipeline.submitter import terminate_run

CANCELLED_PREFIX = "cancelled: "


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel did: the jobs it stopped, and whether the run had already ended."""

    run_id: str
    stopped: list[str]
    already_ended: bool


def cancel_run(ports: RunPorts, run_id: str, reason: str) -> CancelOutcome:
    """Stops every unfinished job of the run and ends the run FAILED; safe to repeat.

    Jobs are stopped even when the run is already recorded as ended: a job submitted while
    an earlier cancel ran (a join the tracker was submitting) is caught by calling again.

    Raises:
        RunNotFoundError: no such run.
        SubmissionError: Batch refused a TerminateJob (the others were still tried).
    """
    run = ports.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run {run_id!r}")
    message = reason if reason.startswith(CANCELLED_PREFIX) else CANCELLED_PREFIX + reason
    already_ended = run.status.is_terminal
    if not already_ended:
        # Recorded first, so the tracker stops submitting joins while the jobs are stopped.
        failures = [*run.failures, {"stage": "", "item": None, "reason": message, "jobId": ""}]
        ports.store.update_run(run_id, status=RunStatus.FAILED, ended_at=ports.clock(), failures=failures)
        ended = ports.store.get_run(run_id)
        assert ended is not None
        ports.publisher.publish([run_event(ended, ports.store.list_stages(run_id), now_ms=ports.clock())])
    stopped = terminate_run(ports.batch, ports.store, run_id, message)
    end_unsubmitted_stages(ports, run_id)
    return CancelOutcome(run_id=run_id, stopped=stopped, already_ended=already_ended)


def unfinished_jobs(ports: RunPorts, run_id: str) -> list[str]:
    """Ids of the run's recorded jobs that Batch does not report ended (asks Batch, not the record)."""
    pending = [j.job_id for j in ports.store.list_jobs(run_id) if j.status not in TERMINAL_BATCH_STATUSES]
    alive: list[str] = []
    for start in range(0, len(pending), 100):  # DescribeJobs takes at most 100 ids
        for job in ports.batch.describe_jobs(jobs=pending[start : start + 100]).get("jobs", []):
            if job.get("status") not in TERMINAL_BATCH_STATUSES:
                alive.append(str(job["jobId"]))
    return alive


def end_unsubmitted_stages(ports: RunPorts, run_id: str) -> list[str]:
    """Ends FAILED the stages of an ended run that never got a job (joins it will not submit now)."""
    submitted = {j.stage for j in ports.store.list_jobs(run_id)}
    ended: list[str] = []
    for record in ports.store.list_stages(run_id):
        if record.status.is_terminal or record.stage in submitted:
            continue
        ports.store.put_stage(replace(record, status=StageStatus.FAILED, ended_at=ports.clock()))
        ended.append(record.stage)
    return ended
