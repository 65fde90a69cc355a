"""Blueprint: S3/EventBridge triggers -> idempotent run start; Batch events -> tracker; execution ends -> end_run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from chalice.app import Blueprint

from chalicelib.aws.composition import load_document, runtime
from chalicelib.observability import logger, tracer
from chalicelib.pipeline.events import BATCH_DETAIL_TYPE
from chalicelib.pipeline.objectstore import join_uri
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.run_end import end_run
from chalicelib.pipeline.runs import epoch_ms, new_run_id
from chalicelib.pipeline.tracker import QUEUE_BLOCKED_DETAIL_TYPE
from chalicelib.pipeline.trigger import objects_from_event, start_run_for_object

blueprint = Blueprint(__name__)


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
    """Batch job state changes and blocked queues feed the tracker; the waits it finds ended are resumed."""
    rt = runtime()
    detail_type = EventBridgeEvent(event).detail_type
    if detail_type == QUEUE_BLOCKED_DETAIL_TYPE:
        outcome = rt.tracker().queue_blocked(event)
    elif detail_type == BATCH_DETAIL_TYPE:
        outcome = rt.tracker().handle(event)
    else:
        return {"ignored": detail_type}
    for wait in outcome.resumes:
        rt.resume(wait)
    if detail_type == QUEUE_BLOCKED_DETAIL_TYPE:
        return {"failed": outcome.blocked}
    return {"published": len(outcome.published), "submitted": outcome.submitted, "resumed": len(outcome.resumes)}


@blueprint.lambda_function(name="execution_ended")
@tracer.capture_lambda_handler
def execution_ended(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A failed, timed-out or stopped execution (Catch does not see stops): end the run, terminating its jobs."""
    detail = EventBridgeEvent(event).detail
    run_id = str(detail.get("name", ""))  # the execution name is the run id
    reason = f"execution {detail.get('status', 'ended')}: {detail.get('error') or ''} {detail.get('cause') or ''}"
    terminated = end_run(runtime().ports(), run_id, reason=reason.strip()).terminated
    logger.info("execution ended", extra={"runId": run_id, "terminated": terminated})
    return {"runId": run_id, "terminated": terminated}
