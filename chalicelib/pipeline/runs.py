"""Run service: start a run (validate, discover items, plan, write the manifest, submit), describe it, re-run its failed items.

These are the functions the CLI, the local run starter and the REST/Lambda handlers call.
They reach the outside only through ``RunPorts``; which Batch, run store, object store and
publisher they get is decided by the composition root.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.items import discover
from chalicelib.pipeline.manifest import read_manifest, to_manifest_bytes, write_manifest
from chalicelib.pipeline.model import Plan, PlannedJob
from chalicelib.pipeline.objectstore import ObjectStore, join_uri
from chalicelib.pipeline.payloads import SubmitContext
from chalicelib.pipeline.planner import DEFAULT_ARRAY_LIMIT, DEFAULT_DEPENDENCY_LIMIT, plan
from chalicelib.pipeline.ports import BatchClient, EventPublisher, RunRequest, RunStore
from chalicelib.pipeline.records import ItemResult, RunRecord, RunStatus, StageRecord, StageStatus
from chalicelib.pipeline.run_end import publish_run_state
from chalicelib.pipeline.runcontext import from_record, to_snapshot
from chalicelib.pipeline.spec import validated_spec
from chalicelib.pipeline.submitter import ensure_job_definitions, submit_plan


class RunNotFoundError(PipelineError):
    """No run with that id in the run store."""


def epoch_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RunPorts:
    """Everything the run service talks to, plus run-wide settings.

    ``queues`` maps compute class -> job queue; ``definitions`` (optional) stage -> job
    definition made elsewhere (CDK); ``objects`` opens the object store for a URI root.
    """

    batch: BatchClient
    store: RunStore
    publisher: EventPublisher
    queues: Mapping[str, str]
    objects: Callable[[str], ObjectStore]
    clock: Callable[[], int] = epoch_ms
    definitions: Mapping[str, str] = field(default_factory=dict)
    array_limit: int = DEFAULT_ARRAY_LIMIT
    dependency_limit: int = DEFAULT_DEPENDENCY_LIMIT
    python: str = "python"


def new_run_id(pipeline: str, now_ms: int, salt: str = "") -> str:
    """A Batch-name-safe, sortable run id: ``<pipeline>-<UTC time>-<4 hex>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_ms / 1000))
    digest = hashlib.sha256(f"{pipeline}{now_ms}{salt}{time.perf_counter_ns()}".encode()).hexdigest()[:4]
    return f"{pipeline[:50]}-{stamp}-{digest}"


def start_run(
    ports: RunPorts,
    request: RunRequest,
    *,
    on_submit: Callable[[PlannedJob, str], None] | None = None,
) -> RunRecord:
    """Starts (or resumes) a run; idempotent on ``request.run_id``.

    A new run is validated, planned, recorded with its stages, then submitted. A run that
    exists and is still SUBMITTING (a crashed or timed-out earlier attempt) is resumed: jobs
    already submitted are not submitted again. A run past submission is returned as is.

    Raises:
        SpecValidationError, ItemsError, PlanningError: bad input (nothing submitted).
        SubmissionError: Batch refused a request (calling again resumes).
    """
    existing = ports.store.get_run(request.run_id)
    if existing is None:
        existing = create_run(ports, request)
    if existing.status is not RunStatus.SUBMITTING:
        return existing
    ctx = from_record(existing)
    submit_plan(ctx.spec, ctx.plan, batch=ports.batch, store=ports.store, ctx=ctx.submit, on_submit=on_submit)
    ports.store.update_run(request.run_id, status=RunStatus.RUNNING)
    run = ports.store.get_run(request.run_id)
    assert run is not None
    if run.status is RunStatus.RUNNING:
        publish_run_state(ports, run.run_id)
    return run


def create_run(ports: RunPorts, request: RunRequest) -> RunRecord:
    """Validates, discovers items, plans, writes the manifest and records the run (SUBMITTING).

    The Step Functions plan task calls this alone; `start_run` also submits.
    """
    base_dir = Path(request.base_dir) if request.base_dir else Path.cwd()
    spec = validated_spec(request.spec, base_dir)
    items = discover(spec.items, request.items_source or None, store_factory=ports.objects)
    planned: Plan = plan(
        spec, len(items), run_id=request.run_id,
        array_limit=ports.array_limit, dependency_limit=ports.dependency_limit,
    )
    objects = ports.objects(request.prefix)
    manifest = write_manifest(objects, request.prefix, items)
    definitions = ensure_job_definitions(ports.batch, spec, given=ports.definitions, python=ports.python)
    submit = SubmitContext(
        run_id=request.run_id, prefix=request.prefix, queues=dict(ports.queues),
        definitions=definitions, python=ports.python,
    )
    now = ports.clock()
    record = RunRecord(
        run_id=request.run_id, pipeline=spec.name, status=RunStatus.SUBMITTING, created_at=now,
        prefix=request.prefix, items=len(items), source=request.source,
        parent_run_id=request.parent_run_id,
        spec=to_snapshot(
            document=request.spec, base_dir=str(base_dir), plan=planned, submit=submit, manifest=manifest,
        ),
    )
    if ports.store.create_run(record):
        for name in planned.stage_order:
            own = planned.jobs_for_stage(name)
            deferred = all(job.deferred for job in own)
            ports.store.put_stage(StageRecord(
                run_id=request.run_id, stage=name,
                status=StageStatus.WAITING if deferred else StageStatus.SUBMITTED,
                items=planned.stage(name).units, deferred=deferred,
            ))
    stored = ports.store.get_run(request.run_id)
    assert stored is not None
    return stored


@dataclass(frozen=True)
class RunView:
    """A run as the CLI and the API show it."""

    run: RunRecord
    stages: list[StageRecord]
    items: list[ItemResult]

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        return {
            "runId": run.run_id, "pipeline": run.pipeline, "status": run.status.value,
            "createdAt": run.created_at, "endedAt": run.ended_at, "prefix": run.prefix,
            "items": run.items, "source": run.source, "parentRunId": run.parent_run_id,
            "stages": [
                {"stage": s.stage, "status": s.status.value, "items": s.items, "counts": s.counts,
                 "startedAt": s.started_at, "endedAt": s.ended_at}
                for s in self.stages
            ],
            "failures": list(run.failures),
        }


def describe_run(store: RunStore, run_id: str) -> RunView:
    """Raises RunNotFoundError for an unknown run id."""
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run {run_id!r}")
    return RunView(run=run, stages=store.list_stages(run_id), items=store.list_item_results(run_id))


def failed_item_indexes(store: RunStore, run: RunRecord) -> list[int]:
    """Items that failed in any foreach stage; every item when only a join failed."""
    ctx = from_record(run)
    failed = {
        r.index for r in store.list_item_results(run.run_id)
        if r.status == "FAILED" and ctx.plan.stage(r.stage).foreach
    }
    if not failed and run.status is RunStatus.FAILED:
        return list(range(run.items))
    return sorted(failed)


def rerun_request(ports: RunPorts, run_id: str, *, new_run_id: str, prefix: str | None = None) -> RunRequest:
    """A request for a new run of the same spec over the failed items of ``run_id``.

    The failed items are written as a manifest into the new run's prefix.

    Raises:
        RunNotFoundError: unknown run. PipelineError: the run has not failed or no failed item.
    """
    run = ports.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run {run_id!r}")
    if run.status is not RunStatus.FAILED:
        raise PipelineError(f"run {run_id} is {run.status.value}; only a FAILED run has failed items to re-run")
    indexes = failed_item_indexes(ports.store, run)
    ctx = from_record(run)
    items = read_manifest(ports.objects(run.prefix), ctx.manifest)
    new_prefix = prefix or join_uri(run.prefix.rstrip("/").rsplit("/", 1)[0], new_run_id)
    uri = join_uri(new_prefix, "rerun-items.json")
    ports.objects(new_prefix).put_bytes(uri, to_manifest_bytes([items[i] for i in indexes]))
    return RunRequest(
        run_id=new_run_id, spec=ctx.document, items_source=uri, prefix=new_prefix,
        source=f"rerun:{run_id}", parent_run_id=run_id, base_dir=run.spec.get("base_dir", ""),
    )
