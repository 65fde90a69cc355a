"""The state machine's tasks (plan, submit, wait, reconcile, finalize, cleanup): task input in, one core call, result out.

``handlers/tasks.py`` is the Lambda (its module name is fixed by the deployed handler string);
this module translates each task to the pipeline core. Every decision is the core's
(``pipeline/run_end.py``): how long a wait may last, whether a failed stage fails its wait,
what a reconcile concludes, and ending the run. Errors propagate on purpose: their class
name is the Step Functions error name the ASL retries or reports.

Task inputs (``statemachines/pipeline.asl.json``): ``{"action", "runId", ...}`` plus
``input``/``execution`` (plan), ``stage``/``taskToken`` (wait), ``stage`` and optional
``final`` (reconcile: default true, a timed-out wait; false, a periodic check that returns
``{"stage", "status"}`` for a stage still running instead of raising StageTimedOutError),
``state`` (cleanup: the caught error).
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.aws.composition import (
    AwsRuntime,
    load_document,
    run_request,
    validate_input,
)
from chalicelib.pipeline import runs
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.records import StageStatus
from chalicelib.pipeline.run_end import (
    RunFailedError,
    StageFailedError,
    StageTimedOutError,
    end_run,
    failure_cause,
    finish_run,
    stage_after_wait,
    wait_timeout,
)
from chalicelib.pipeline.runcontext import from_record
from chalicelib.pipeline.submitter import SubmissionError
from chalicelib.pipeline.tracker import Resume

THROTTLE_CODES = frozenset({"TooManyRequestsException", "AWSBatchException", "ThrottlingException"})

__all__ = ["TASKS", "BatchThrottledError", "RunFailedError", "StageFailedError", "StageTimedOutError"]


class BatchThrottledError(Exception):
    """Batch throttled a call; the state machine retries the task with jitter (name used in the ASL)."""


def plan(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Validates input and spec, lists items, plans, writes manifest and run record (nothing submitted)."""
    payload = validate_input(event.get("input") or {})
    request = run_request(rt, payload, str(event.get("execution", "")), load_document(rt))
    # The run's creation without its submission: Submit is its own task.
    run = rt.store.get_run(request.run_id) or runs.create_run(rt.ports(), request)
    ctx = from_record(run)
    stages = [{"name": name, "timeoutSeconds": wait_timeout(ctx.spec, name)} for name in ctx.plan.stage_order]
    return {"runId": run.run_id, "stages": stages}


def submit(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Submits every stage at once; calling it again resumes (submitted jobs are not resubmitted)."""
    run_id = str(event["runId"])
    run = rt.store.get_run(run_id)
    if run is None:
        raise PipelineError(f"no run {run_id!r} (Plan did not record it)")
    request = run_request(rt, {"runId": run_id, "prefix": run.prefix}, run_id, run.spec["document"])
    try:
        run = runs.start_run(rt.ports(), request)
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
        rt.resume(Resume(run_id, stage, outcome.token, outcome.result))
    return {"runId": run_id, "stage": stage, "resumed": outcome.completed}


def reconcile(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """One DescribeJobs round over the run's unfinished jobs, then the core's verdict on the stage."""
    run_id, stage = str(event["runId"]), str(event["stage"])
    outcome = rt.tracker().reconcile(run_id)
    for found in outcome.resumes:
        rt.resume(found)
    run = rt.store.get_run(run_id)
    if run is None:
        raise PipelineError(f"no run {run_id!r}")
    return stage_after_wait(from_record(run).spec, rt.store, run_id, stage, final=bool(event.get("final", True)))


def finalize(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Every stage ended: the run is SUCCEEDED unless the tracker recorded it FAILED (RunFailedError)."""
    run = finish_run(rt.ports(), str(event["runId"]))
    return {"runId": run.run_id, "status": run.status.value}


def cleanup(rt: AwsRuntime, event: dict[str, Any]) -> dict[str, Any]:
    """Ends the run FAILED (terminating outstanding jobs) and names the error for the Fail state."""
    state = event.get("state") or {}
    name, cause = caught_error(state.get("error") or {})
    run_id = str((state.get("run") or {}).get("runId") or (state.get("input") or {}).get("runId")
                 or state.get("runId") or event.get("execution", ""))
    if not cause or cause == name:
        # The cause can be lost on the way (e.g. through the Map state); the store still knows.
        cause = _failed_stage_cause(rt, run_id) or cause
    end_run(rt.ports(), run_id, reason=f"{name}: {cause}"[:1000])
    return {"error": name, "cause": cause or name}


def caught_error(error: dict[str, Any]) -> tuple[str, str]:
    """(error name, cause) of a Catch's error; a Lambda error's JSON cause gives its type and message."""
    name = str(error.get("Error") or "States.Runtime")
    cause = str(error.get("Cause") or "")
    if name == "Lambda.Unknown" or cause.startswith("{"):
        try:
            parsed = json.loads(cause)
            name, cause = str(parsed.get("errorType", name)), str(parsed.get("errorMessage", cause))
        except (ValueError, AttributeError):
            pass
    return name, cause


def _failed_stage_cause(rt: AwsRuntime, run_id: str) -> str:
    for record in rt.store.list_stages(run_id):
        if record.status is StageStatus.FAILED:
            return failure_cause(rt.store, run_id, record.stage, {"stage": record.stage, "counts": record.counts})
    return ""


TASKS = {"plan": plan, "submit": submit, "wait": wait, "reconcile": reconcile, "finalize": finalize,
         "cleanup": cleanup}
