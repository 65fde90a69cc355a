"""The state machine's tasks (plan, submit, wait, reconcile, finalize, cleanup) and resuming waits."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws.composition import (
    AwsRuntime,
    load_document,
    run_request,
    validate_input,
)
from chalicelib.observability import logger
from chalicelib.pipeline import runs as service
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.records import RunStatus, StageStatus
from chalicelib.pipeline.runcontext import from_record
from chalicelib.pipeline.runs import epoch_ms
from chalicelib.pipeline.submitter import SubmissionError, terminate_run

DEFAULT_WAIT_S = 7 * 24 * 3600  # a stage without timeouts may wait a week, then reconcile
QUEUE_SLACK_S = 3600
THROTTLE_CODES = frozenset({"TooManyRequestsException", "AWSBatchException", "ThrottlingException"})
GONE_TOKEN_CODES = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken"})


class BatchThrottledError(Exception):
    """Batch throttled a call; the state machine retries the task with jitter (name used in the ASL)."""


class StageFailedError(Exception):
    """A stage ended FAILED and nothing downstream tolerates it (name used in the ASL)."""


class StageTimedOutError(Exception):
    """A stage's wait timed out and DescribeJobs shows it still running."""


class RunFailedError(Exception):
    """Finalize found the run FAILED (e.g. a tolerated stage left a failed join)."""


def plan(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Validates input and spec, lists items, plans, writes manifest and run record (nothing submitted)."""
    payload = validate_input(event.get("input") or {})
    request = run_request(rt, payload, str(event.get("execution", "")), load_document(rt))
    # The service's run creation without its submission: Submit is its own task.
    run = rt.store.get_run(request.run_id) or service.create_run(rt.ports(), request)
    ctx = from_record(run)
    stages = [{"name": name, "timeoutSeconds": wait_timeout(ctx.spec, name)} for name in ctx.plan.stage_order]
    return {"runId": run.run_id, "stages": stages}


def wait_timeout(spec: Any, stage_name: str) -> int:
    """How long a stage's wait may last: its attempts' timeouts along its upstream chain, plus queue slack."""
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


def submit(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Submits every stage at once; calling it again resumes (submitted jobs are not resubmitted)."""
    run_id = str(event["runId"])
    run = rt.store.get_run(run_id)
    if run is None:
        raise PipelineError(f"no run {run_id!r} (Plan did not record it)")
    request = run_request(rt, {"runId": run_id, "prefix": run.prefix}, run_id, run.spec["document"])
    try:
        run = service.start_run(rt.ports(), request)
    except SubmissionError as err:
        if err.code in THROTTLE_CODES:
            raise BatchThrottledError(str(err)) from err
        raise
    return {"runId": run.run_id, "status": run.status.value}


def wait(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Stores the task token; if the stage already ended, resumes the wait at once."""
    run_id, stage = str(event["runId"]), str(event["stage"])
    outcome = rt.store.put_task_token(run_id, stage, str(event["taskToken"]))
    if outcome.completed and outcome.token and outcome.result is not None:
        resume(rt, run_id, outcome.token, outcome.result)
    return {"runId": run_id, "stage": stage, "resumed": outcome.completed}


def resume(rt: AwsRuntime, run_id: str, token: str, result: dict[str, Any]) -> None:
    """SendTaskSuccess, or SendTaskFailure(StageFailed) for a failure nothing downstream tolerates."""
    stage = str(result.get("stage", ""))
    try:
        if result.get("status") == StageStatus.FAILED.value and not is_tolerated(rt, run_id, stage):
            rt.sfn.send_task_failure(taskToken=token, error="StageFailed", cause=failure_cause(rt, run_id, stage,
                                                                                               result))
        else:
            rt.sfn.send_task_success(taskToken=token, output=json.dumps(result))
    except ClientError as err:
        # A used or expired token: the other writer already resumed, or the wait timed out.
        if err.response.get("Error", {}).get("Code") not in GONE_TOKEN_CODES:
            raise
        logger.info("wait already resumed", extra={"runId": run_id, "stage": stage})


def is_tolerated(rt: AwsRuntime, run_id: str, stage: str) -> bool:
    """True when a stage directly downstream runs on the items that succeeded (allow_failed_items)."""
    run = rt.store.get_run(run_id)
    if run is None or not stage:
        return False
    spec = from_record(run).spec
    return any(s.allow_failed_items and stage in s.after for s in spec.stages)


def failure_cause(rt: AwsRuntime, run_id: str, stage: str, result: dict[str, Any]) -> str:
    """``stage align: 2 of 10 items failed (first: item 3: <reason>)``."""
    if result.get("reason"):
        return f"stage {stage}: {result['reason']}"
    failed = [r for r in rt.store.list_item_results(run_id, stage) if r.status == "FAILED"]
    counts = result.get("counts") or {}
    total = sum(int(v) for v in counts.values()) or len(failed)
    head = f"stage {stage}: {len(failed) or counts.get('FAILED', 0)} of {total} items failed"
    if failed:
        first = min(failed, key=lambda r: r.index)
        detail = first.reason or (f"exit code {first.exit_code}" if first.exit_code is not None else "failed")
        head += f" (first: item {first.index}: {detail})"
    return head[:30000]


def reconcile(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """After a wait timed out: one DescribeJobs round over the run's unfinished jobs decides."""
    run_id, stage = str(event["runId"]), str(event["stage"])
    outcome = rt.tracker().reconcile(run_id)
    for token, result in outcome.resumes:
        resume(rt, run_id, token, result)
    record = rt.store.get_stage(run_id, stage)
    if record is not None and record.status is StageStatus.SUCCEEDED:
        return {"stage": stage, "status": record.status.value}
    if record is not None and record.status is StageStatus.FAILED:
        if is_tolerated(rt, run_id, stage):
            return {"stage": stage, "status": record.status.value}
        raise StageFailedError(failure_cause(rt, run_id, stage, {"stage": stage, "counts": record.counts}))
    raise StageTimedOutError(f"stage {stage}: still {record.status.value if record else 'unknown'} "
                             "when its wait timed out")


def finalize(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Every stage ended: the run is SUCCEEDED unless the tracker recorded it FAILED."""
    run_id = str(event["runId"])
    run = rt.store.get_run(run_id)
    if run is None:
        raise PipelineError(f"no run {run_id!r}")
    if run.status is RunStatus.FAILED:
        raise RunFailedError("; ".join(str(f.get("reason", f)) for f in run.failures)[:30000] or "run failed")
    if not run.status.is_terminal:
        rt.store.update_run(run_id, status=RunStatus.SUCCEEDED, ended_at=epoch_ms())
        rt.publish_run(run_id)
    return {"runId": run_id, "status": RunStatus.SUCCEEDED.value}


def cleanup(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Terminates outstanding jobs, marks the run FAILED, and names the error for the Fail state."""
    state = event.get("state") or {}
    error = state.get("error") or {}
    name = str(error.get("Error") or "States.Runtime")
    cause = str(error.get("Cause") or "")
    if name == "Lambda.Unknown" or cause.startswith("{"):
        # A Lambda error arrives as {"errorMessage", "errorType", ...}: keep the message.
        try:
            parsed = json.loads(cause)
            name, cause = str(parsed.get("errorType", name)), str(parsed.get("errorMessage", cause))
        except (ValueError, AttributeError):
            pass
    run_id = str((state.get("run") or {}).get("runId") or (state.get("input") or {}).get("runId")
                 or state.get("runId") or event.get("execution", ""))
    if not cause or cause == name:
        # The cause can be lost on the way (e.g. through the Map state); the store still knows.
        cause = _failed_stage_cause(rt, run_id) or cause
    end_run(rt, run_id, f"{name}: {cause}"[:1000])
    return {"error": name, "cause": cause or name}


def _failed_stage_cause(rt: AwsRuntime, run_id: str) -> str:
    for record in rt.store.list_stages(run_id):
        if record.status is StageStatus.FAILED:
            return failure_cause(rt, run_id, record.stage, {"stage": record.stage, "counts": record.counts})
    return ""


def end_run(rt: AwsRuntime, run_id: str, reason: str) -> list[str]:
    """Terminates the run's unfinished jobs and records it FAILED (safe to repeat).

    Jobs are terminated even when the run is already marked ended (the tracker may have
    decided first); TerminateJob on a job that has finished changes nothing on Batch.
    """
    run = rt.store.get_run(run_id)
    if run is None:
        return []
    terminated = terminate_run(rt.batch, rt.store, run_id, reason)
    if not run.status.is_terminal:
        failures = [*run.failures, {"stage": "", "item": None, "reason": reason, "job_id": ""}]
        rt.store.update_run(run_id, status=RunStatus.FAILED, ended_at=epoch_ms(), failures=failures)
        rt.publish_run(run_id)
    return terminated


TASKS = {"plan": plan, "submit": submit, "wait": wait, "reconcile": reconcile, "finalize": finalize,
         "cleanup": cleanup}
