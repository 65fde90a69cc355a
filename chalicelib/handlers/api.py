"""Blueprint: REST routes (start run, list runs, describe run, re-run failed items, cancel), IAM-authorized."""

from __future__ import annotations

from typing import Any

from chalice.app import (
    BadRequestError,
    Blueprint,
    ConflictError,
    IAMAuthorizer,
    NotFoundError,
)

from chalicelib.aws.composition import (
    InputError,
    load_document,
    run_request,
    runtime,
    validate_input,
)
from chalicelib.pipeline import runs as service
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.run_end import cancel_run

blueprint = Blueprint(__name__)
iam_auth = IAMAuthorizer()


def _errors(err: Exception) -> Exception:
    """PipelineError and input errors -> the matching HTTP error, in one place."""
    if isinstance(err, service.RunNotFoundError):
        return NotFoundError(str(err))
    if isinstance(err, InputError):
        return BadRequestError(str(err))
    if isinstance(err, PipelineError):
        return ConflictError(str(err))
    return err


@blueprint.route("/runs", methods=["POST"], authorizer=iam_auth)
def start_run() -> dict[str, Any]:
    """Body: the state machine's documented input (items, runId, source)."""
    rt = runtime()
    try:
        payload = validate_input(blueprint.current_request.json_body or {})
    except InputError as err:
        raise _errors(err) from err
    run_id = payload.get("runId") or service.new_run_id(rt.settings.pipeline or "run", service.epoch_ms(), "api")
    request = run_request(rt, {**payload, "source": payload.get("source", "api")}, run_id, load_document(rt))
    return {"runId": rt.starter().start_run(request)}


@blueprint.route("/runs", methods=["GET"], authorizer=iam_auth)
def list_runs() -> dict[str, Any]:
    runs = runtime().store.list_runs(limit=50)
    return {"runs": [{"runId": r.run_id, "status": r.status.value, "createdAt": r.created_at, "items": r.items}
                     for r in runs]}


@blueprint.route("/runs/{run_id}", methods=["GET"], authorizer=iam_auth)
def describe_run(run_id: str) -> dict[str, Any]:
    try:
        return service.describe_run(runtime().store, run_id).to_dict()
    except PipelineError as err:
        raise _errors(err) from err


@blueprint.route("/runs/{run_id}/rerun", methods=["POST"], authorizer=iam_auth)
def rerun(run_id: str) -> dict[str, Any]:
    """A new run of the same spec over the failed items of ``run_id``."""
    rt = runtime()
    try:
        new_id = service.new_run_id(rt.settings.pipeline or "run", service.epoch_ms(), run_id)
        request = service.rerun_request(rt.ports(), run_id, new_run_id=new_id)
    except PipelineError as err:
        raise _errors(err) from err
    return {"runId": rt.starter().start_run(request)}


@blueprint.route("/runs/{run_id}/cancel", methods=["POST"], authorizer=iam_auth)
def cancel(run_id: str) -> dict[str, Any]:
    """Cancels the run: its unfinished jobs are terminated (or cancelled before they start), it ends FAILED.

    Body (optional): ``{"reason": "..."}``. The state machine then sees the jobs' ends and runs
    its cleanup, which finds the run already ended. Repeating the call is harmless.
    """
    body = blueprint.current_request.json_body or {}
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise BadRequestError("$.reason: expected a non-empty string")
    outcome = cancel_run(runtime().ports(), run_id, (reason or "by the user (API)")[:1000])
    if outcome.status is None:
        raise NotFoundError(f"no run {run_id!r}")
    return {"runId": run_id, "status": outcome.status.value, "stoppedJobs": outcome.terminated,
            "alreadyEnded": not outcome.ended}
