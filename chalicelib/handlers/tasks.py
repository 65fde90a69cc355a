"""Blueprint: Lambdas invoked by Step Functions (plan, submit, wait, reconcile, finalize, cleanup)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

blueprint = Blueprint(__name__)


@blueprint.lambda_function(name="tasks")
def tasks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One function for every state machine task; ``event["action"]`` picks the task."""
    raise NotImplementedError(event.get("action"))
