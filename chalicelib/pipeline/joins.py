"""Deferred jobs: decides which `allow_failed_items` joins (and what follows them) are ready, on which items, or can never run.

A Batch dependency on an array fails the dependent job when any child fails, so a join that
tolerates failed items is not submitted up front. Once every job it waits for has ended, it
is submitted over the items that succeeded in every upstream foreach stage (written to an
item list by a ``JoinItemsWriter``). A join none of whose items succeeded, and every deferred
job after a stage that never ran, is skipped (its stage ends FAILED).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chalicelib.pipeline.manifest import read_manifest, write_join_items
from chalicelib.pipeline.model import JobKind, PlannedJob
from chalicelib.pipeline.objectstore import ObjectStore
from chalicelib.pipeline.ports import RunStore
from chalicelib.pipeline.records import TERMINAL_BATCH_STATUSES, JobRecord, StageRecord
from chalicelib.pipeline.runcontext import RunContext

# (run context, join stage, item indexes) -> URI of an item list the runner reads via --items.
JoinItemsWriter = Callable[[RunContext, str, list[int]], str]


def manifest_join_items(objects: ObjectStore) -> JoinItemsWriter:
    """A JoinItemsWriter that writes the chosen items to ``<run prefix>/_joins/<stage>.json``."""

    def write(ctx: RunContext, stage: str, indexes: list[int]) -> str:
        items = read_manifest(objects, ctx.manifest)
        return write_join_items(objects, ctx.run.prefix, stage, [items[i] for i in indexes])

    return write


@dataclass
class JoinPlan:
    """Deferred jobs to submit now (in plan order), join item indexes, stages to skip."""

    ready: list[PlannedJob] = field(default_factory=list)
    join_indexes: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> reason


def plan_deferred(
    ctx: RunContext,
    jobs: Mapping[str, JobRecord],
    stages: Mapping[str, StageRecord],
    store: RunStore,
) -> JoinPlan:
    """What to do with the deferred jobs not submitted yet, given what is recorded now."""
    decision = JoinPlan()
    stage_of = {job.key: job.stage for job in ctx.plan.jobs}
    ready_keys: set[str] = set()
    for job in ctx.plan.deferred_jobs:
        if job.key in jobs or job.stage in decision.skipped:
            continue
        record = stages.get(job.stage)
        if record is not None and record.status.is_terminal:
            continue
        upstream = [d.job_key for d in job.depends_on if d.job_key] + list(job.waits_for)
        blocker = next(
            (
                k for k in upstream
                if k not in jobs and k not in ready_keys
                and (stage_of[k] in decision.skipped or _is_terminal(stages.get(stage_of[k])))
            ),
            None,
        )
        if blocker is not None:
            decision.skipped[job.stage] = f"upstream stage {stage_of[blocker]!r} did not run"
            continue
        if not all(w in jobs and jobs[w].status in TERMINAL_BATCH_STATUSES for w in job.waits_for):
            continue
        if not all(k in jobs or k in ready_keys for k in upstream if k not in job.waits_for):
            continue
        if _needs_item_list(ctx, job) and job.stage not in decision.join_indexes:
            indexes = succeeded_items(ctx, job.stage, store)
            if not indexes:
                decision.skipped[job.stage] = "no item succeeded in its upstream stages"
                continue
            decision.join_indexes[job.stage] = indexes
        decision.ready.append(job)
        ready_keys.add(job.key)
    return decision


def succeeded_items(ctx: RunContext, stage: str, store: RunStore) -> list[int]:
    """Indexes of the items that succeeded in every foreach stage the join follows."""
    upstream = ctx.plan.stage(stage).gathers
    common: set[int] | None = None
    for name in upstream:
        ok = {r.index for r in store.list_item_results(ctx.run.run_id, name) if r.status == "SUCCEEDED"}
        common = ok if common is None else common & ok
    return sorted(common or ())


def _needs_item_list(ctx: RunContext, job: PlannedJob) -> bool:
    return job.kind is JobKind.STAGE and ctx.plan.stage(job.stage).item_list


def _is_terminal(record: StageRecord | None) -> bool:
    return record is not None and record.status.is_terminal
