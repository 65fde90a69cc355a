"""Blueprint: the Lambda Step Functions invokes for every task; the tasks themselves are in state_machine_tasks.py."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint

from chalicelib.aws.composition import runtime
from chalicelib.handlers import state_machine_tasks
from chalicelib.observability import logger, metrics, tracer

blueprint = Blueprint(__name__)


@blueprint.lambda_function(name="tasks")
@tracer.capture_lambda_handler
@metrics.log_metrics
def tasks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One function for every state machine task; ``event["action"]`` picks it.

    Errors propagate on purpose: their class name is the Step Functions error name the
    state machine retries (BatchThrottledError) or turns into the Fail state's cause.
    """
    action = str(event.get("action", ""))
    task = state_machine_tasks.TASKS.get(action)
    metrics.add_metric(name=f"Task_{action}" if task else "TaskRejected", unit="Count", value=1)
    if task is None:
        raise ValueError(f"action: expected one of {sorted(state_machine_tasks.TASKS)}, got {action!r}")
    logger.append_keys(action=action, runId=event.get("runId"))
    return task(runtime(), event)
