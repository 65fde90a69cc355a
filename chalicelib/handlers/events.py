"""Blueprint: S3/EventBridge triggers -> idempotent run start; Batch events -> tracker; execution ends -> cleanup."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from chalice.app import Blueprint

from chalicelib.aws.composition import load_document, runtime
from chalicelib.handlers import run_tasks
from chalicelib.observability import logger, tracer
from chalicelib.pipeline.events import BATCH_DETAIL_TYPE
from chalicelib.pipeline.objectstore import join_uri
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.runs import epoch_ms, new_run_id
from chalicelib.pipeline.trigger import objects_from_event, start_run_for_object

blueprint = Blueprint(__name__)
QUEUE_BLOCKED = "Batch Job Queue Blocked"


@blueprint.lambda_function(name="trigger")
@tracer.capture_lambda_handler
def trigger(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Uploads under the inbox and the spec's schedule start runs; a duplicate delivery starts nothing."""
    rt = runtime()
    document = load_document(rt)
    if event.get("source") == "schedule":
        run_id = new_run_id(str(document["name"]), epoch_ms(), "schedule")
        request = RunRequest(run_id=run_id, spec=document, items_source="", prefix=join_uri(rt.runs_prefix(), run_id),
                             source="schedule")
        return {"runs": [rt.starter().start_run(request)]}
    runs = [
        start_run_for_object(rt.starter(), obj, spec=document, runs_prefix=rt.runs_prefix(),
                             objects=rt.objects(obj.root))
        for obj in objects_from_event(event)
    ]
    logger.info("trigger", extra={"runs": runs})
    return {"runs": runs}


@blueprint.lambda_function(name="tracker")
@tracer.capture_lambda_handler
def tracker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Batch job state changes feed the tracker; finished stages resume their waits."""
    rt = runtime()
    parsed = EventBridgeEvent(event)
    if parsed.detail_type == QUEUE_BLOCKED:
        return {"failed": _fail_blocked(event)}
    if parsed.detail_type != BATCH_DETAIL_TYPE:
        return {"ignored": parsed.detail_type}
    job = rt.store.find_job(str(parsed.detail.get("jobId", "")))
    outcome = rt.tracker().handle(event)
    for token, result in outcome.resumes:
        run_tasks.resume(rt, job.run_id if job else "", token, result)
    return {"published": len(outcome.published), "submitted": outcome.submitted, "resumed": len(outcome.resumes)}


def _fail_blocked(event: dict[str, Any]) -> list[str]:
    """A job blocked at the head of its queue fails its stage's wait with Batch's reason."""
    rt = runtime()
    reason = str(event.get("detail", {}).get("statusReason") or "job queue blocked")
    failed = []
    for arn in event.get("resources", []):
        if ":job/" not in arn:
            continue
        job = rt.store.find_job(arn.rsplit("/", 1)[-1])
        if job is None:
            continue
        result = {"stage": job.stage, "status": "FAILED", "reason": f"job queue blocked: {reason}"}
        outcome = rt.store.put_stage_result(job.run_id, job.stage, result)
        if outcome.completed and outcome.token and outcome.result is not None:
            run_tasks.resume(rt, job.run_id, outcome.token, outcome.result)
        failed.append(job.job_id)
    return failed


@blueprint.lambda_function(name="execution_ended")
@tracer.capture_lambda_handler
def execution_ended(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A failed, timed-out or stopped execution (Catch does not see stops): terminate its jobs."""
    detail = EventBridgeEvent(event).detail
    run_id = str(detail.get("name", ""))  # the execution name is the run id
    reason = f"execution {detail.get('status', 'ended')}: {detail.get('error') or ''} {detail.get('cause') or ''}"
    terminated = run_tasks.end_run(runtime(), run_id, reason.strip())
    logger.info("execution ended", extra={"runId": run_id, "terminated": terminated})
    return {"runId": run_id, "terminated": terminated}
