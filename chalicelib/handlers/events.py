"""Blueprint: S3/EventBridge triggers -> idempotent run start; Batch events -> tracker; execution ends -> cleanup."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

blueprint = Blueprint(__name__)


@blueprint.lambda_function(name="trigger")
def trigger(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError


@blueprint.lambda_function(name="tracker")
def tracker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError


@blueprint.lambda_function(name="execution_ended")
def execution_ended(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError
