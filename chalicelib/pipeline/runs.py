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
from chalicelib.pipeline.manifest import read_manifest, write_manifest
from chalicelib.pipeline.model import Plan, PlannedJob
from chalicelib.pipeline.objectstore import ObjectStore, join_uri
from chalicelib.pipeline.payloads import SubmitContext
from chalicelib.pipeline.planner import DEFAULT_ARRAY_LIMIT, DEFAULT_DEPENDENCY_LIMIT, plan
from chalicelib.pipeline.ports import BatchClient, EventPublisher, RunRequest, RunStore
from chalicelib.pipeline.records import RunRecord, RunStatus, StageRecord, StageStatus
from chalicelib.pipeline.resume import ResumePlan, plan_resume, write_references
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
    """A run as the CLI and the API show it: the run and its stages (their counts say how items
    went; the item results themselves, up to one per item and stage, are not read)."""

    run: RunRecord
    stages: list[StageRecord]

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
    return RunView(run=run, stages=store.list_stages(run_id))


def rerun_request(
    ports: RunPorts, run_id: str, *, new_run_id: str, prefix: str | None = None,
    document: dict[str, Any] | None = None, base_dir: str | None = None,
) -> RunRequest:
    """A request for a rerun of ``run_id`` that completes it (see ``prepare_rerun``)."""
    return prepare_rerun(ports, run_id, new_run_id=new_run_id, prefix=prefix, document=document,
                         base_dir=base_dir)[0]


def prepare_rerun(
    ports: RunPorts, run_id: str, *, new_run_id: str, prefix: str | None = None,
    document: dict[str, Any] | None = None, base_dir: str | None = None,
) -> tuple[RunRequest, ResumePlan]:
    """A new run over every item of ``run_id`` that reuses its published outputs, and what it reuses.

    ``document`` is the spec to run (default: the earlier run's); a stage whose definition
    differs from the earlier run's runs again for every item. The references to reused outputs
    are written into the new run's prefix here, before anything is submitted.

    Raises:
        RunNotFoundError: unknown run. PipelineError: the run has not ended, or nothing would run.
        SpecValidationError: ``document`` is not a valid spec.
    """
    run = ports.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run {run_id!r}")
    if not run.status.is_terminal:
        raise PipelineError(f"run {run_id} is {run.status.value}; wait for it to end (or cancel it) before a rerun")
    ctx = from_record(run)
    spec_document = document if document is not None else ctx.document
    spec_base = base_dir if base_dir is not None else run.spec.get("base_dir", "")
    if document is not None:
        spec = validated_spec(spec_document, Path(spec_base) if spec_base else None)
    else:
        spec = ctx.spec
    items = read_manifest(ports.objects(run.prefix), ctx.manifest)
    new_prefix = prefix or join_uri(run.prefix.rstrip("/").rsplit("/", 1)[0], new_run_id)
    order = plan(spec, len(items), run_id=new_run_id, array_limit=ports.array_limit,
                 dependency_limit=ports.dependency_limit).stage_order
    resume = plan_resume(
        parent_run_id=run_id, parent_prefix=run.prefix, parent_spec=ctx.spec, spec=spec, stage_order=order,
        items=items, new_prefix=new_prefix, objects=ports.objects,
    )
    if not resume.reruns_anything:
        raise PipelineError(f"nothing to re-run: every output of run {run_id} is published and up to date")
    write_references(resume, ports.objects, new_prefix)
    request = RunRequest(
        run_id=new_run_id, spec=spec_document, items_source=ctx.manifest, prefix=new_prefix,
        source=f"rerun:{run_id}", parent_run_id=run_id, base_dir=spec_base,
    )
    return request, resume
