"""Runs a Plan against an injected Batch client: registers changed job definitions, submits jobs idempotently, maps job key -> jobId.

Idempotency (a submission retried after a crash or timeout never submits a job twice):

1. before each SubmitJob the run store is asked for the planned job's key; a recorded job is
   reused as is;
2. when the store has no record, ListJobs(jobQueue, JOB_NAME=<deterministic name>) is asked,
   which finds a job submitted by an attempt that crashed between SubmitJob and the record;
3. each new jobId is recorded in the run store right after SubmitJob, before the next job.

This is the only module of the pipeline core that interprets the Batch client's errors. It
recognises them by shape (botocore's exception classes, a ``response["Error"]`` dict) without
importing botocore, so the core stays free of the SDK (the import contracts check that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.model import JobKind, PipelineSpec, Plan, PlannedJob
from chalicelib.pipeline.payloads import (
    HASH_KEY,
    SubmitContext,
    to_job_definition,
    to_submit_job,
)
from chalicelib.pipeline.ports import BatchClient, RunStore
from chalicelib.pipeline.records import TERMINAL_BATCH_STATUSES, JobRecord


class SubmissionError(PipelineError):
    """A Batch call made on behalf of a stage failed; ``code`` is the AWS error code."""

    def __init__(self, stage: str, code: str, message: str = "") -> None:
        self.stage = stage
        self.code = code
        super().__init__(f"stage {stage!r}: Batch refused the request ({code}){': ' + message if message else ''}")


def _is_client_error(err: Exception) -> bool:
    """A service error as boto3 raises it (ClientError): a ``response`` with an ``Error``."""
    response = getattr(err, "response", None)
    return isinstance(response, dict) and isinstance(response.get("Error"), dict)


def _is_sdk_error(err: Exception) -> bool:
    """Any error of the AWS SDK (ClientError, BotoCoreError: endpoint, credentials, ...)."""
    return _is_client_error(err) or any(cls.__module__.startswith("botocore.") for cls in type(err).__mro__)


def _error_code(err: Exception) -> tuple[str, str]:
    if _is_client_error(err):
        info = err.response["Error"]
        return str(info.get("Code", "ClientError")), str(info.get("Message", ""))
    return type(err).__name__, str(err)


def _call(stage: str, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    try:
        return fn(**kwargs)
    except Exception as err:  # the SDK's errors are recognised by shape; anything else propagates
        if not _is_sdk_error(err):
            raise
        code, message = _error_code(err)
        raise SubmissionError(stage, code, message) from err


def ensure_job_definitions(
    batch: BatchClient,
    spec: PipelineSpec,
    *,
    given: Mapping[str, str] | None = None,
    python: str = "python",
) -> dict[str, str]:
    """Stage -> job definition (``name:revision``), registering only what changed.

    A stage in ``given`` (on AWS: the definitions CDK made) is used as is. Otherwise the
    latest ACTIVE revision of the stage's definition name is reused when its
    ``conveyorHash`` parameter equals the content hash of what the spec asks for.

    Raises:
        SubmissionError: DescribeJobDefinitions or RegisterJobDefinition failed.
    """
    definitions: dict[str, str] = {}
    for stage in spec.stages:
        if given and stage.name in given:
            definitions[stage.name] = given[stage.name]
            continue
        request = to_job_definition(spec, stage, python=python)
        name = request["jobDefinitionName"]
        latest = _latest_active(batch, stage.name, name)
        if latest is not None and latest.get("parameters", {}).get(HASH_KEY) == request["parameters"][HASH_KEY]:
            definitions[stage.name] = f"{name}:{latest['revision']}"
            continue
        response = _call(stage.name, batch.register_job_definition, **request)
        definitions[stage.name] = f"{response['jobDefinitionName']}:{response['revision']}"
    return definitions


def _latest_active(batch: BatchClient, stage: str, name: str) -> dict[str, Any] | None:
    latest: dict[str, Any] | None = None
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"jobDefinitionName": name, "status": "ACTIVE"}
        if token:
            kwargs["nextToken"] = token
        page = _call(stage, batch.describe_job_definitions, **kwargs)
        for definition in page.get("jobDefinitions", []):
            if definition.get("status", "ACTIVE") != "ACTIVE":
                continue
            if latest is None or int(definition["revision"]) > int(latest["revision"]):
                latest = definition
        token = page.get("nextToken")
        if not token:
            return latest


def find_submitted(batch: BatchClient, stage: str, queue: str, name: str) -> str | None:
    """The id of a job already submitted under this exact name to this queue, if any."""
    # With filters, ListJobs returns every status (children excluded), newest first; the
    # JOB_NAME filter is case-insensitive, so compare the name exactly.
    page = _call(
        stage, batch.list_jobs, jobQueue=queue,
        filters=[{"name": "JOB_NAME", "values": [name]}],
    )
    for summary in page.get("jobSummaryList", []):
        if summary.get("jobName") == name:
            return str(summary["jobId"])
    return None


def submit_jobs(
    spec: PipelineSpec,
    plan: Plan,
    jobs: Iterable[PlannedJob],
    *,
    batch: BatchClient,
    store: RunStore,
    ctx: SubmitContext,
    on_submit: Callable[[PlannedJob, str], None] | None = None,
) -> dict[str, str]:
    """Submits ``jobs`` (dependencies first), skipping those already submitted; key -> jobId.

    ``on_submit`` is called after each job is recorded (tests use it to simulate a crash).

    Raises:
        SubmissionError: a Batch call failed; jobs recorded so far stay recorded, so calling
            again resumes where this call stopped.
    """
    job_ids = {rec.key: rec.job_id for rec in store.list_jobs(plan.run_id)}
    for job in jobs:
        if job.key in job_ids:
            continue
        recorded = store.get_job(plan.run_id, job.key)
        if recorded is not None:
            job_ids[job.key] = recorded.job_id
            continue
        request = to_submit_job(spec, job, ctx, job_ids)
        job_id = find_submitted(batch, job.stage, request["jobQueue"], job.name)
        if job_id is None:
            job_id = str(_call(job.stage, batch.submit_job, **request)["jobId"])
        store.put_job(
            JobRecord(
                run_id=plan.run_id, key=job.key, stage=job.stage, job_id=job_id,
                job_name=job.name, offset=job.offset, size=job.size,
                is_array=job.is_array, is_barrier=job.kind is JobKind.BARRIER,
            )
        )
        job_ids[job.key] = job_id
        if on_submit is not None:
            on_submit(job, job_id)
    return job_ids


def submit_plan(
    spec: PipelineSpec,
    plan: Plan,
    *,
    batch: BatchClient,
    store: RunStore,
    ctx: SubmitContext,
    on_submit: Callable[[PlannedJob, str], None] | None = None,
) -> dict[str, str]:
    """Submits every job whose upstream is fixed (all but deferred joins), in plan order."""
    return submit_jobs(
        spec, plan, plan.immediate_jobs, batch=batch, store=store, ctx=ctx, on_submit=on_submit
    )


def terminate_run(batch: BatchClient, store: RunStore, run_id: str, reason: str) -> list[str]:
    """TerminateJob on each recorded, not yet finished job of the run; returns their ids.

    Terminating an array parent terminates its children. Failures on single jobs are
    collected into the error raised at the end, so one refusal does not leak the rest.

    Raises:
        SubmissionError: at least one TerminateJob call failed (after trying all of them).
    """
    terminated: list[str] = []
    first_error: SubmissionError | None = None
    for job in store.list_jobs(run_id):
        if job.status in TERMINAL_BATCH_STATUSES:
            continue
        try:
            _call(job.stage, batch.terminate_job, jobId=job.job_id, reason=reason[:1024])
            terminated.append(job.job_id)
        except SubmissionError as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    return terminated
