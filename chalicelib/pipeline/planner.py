"""PipelineSpec -> Plan (order, cycles, array sizes, chunks, barriers); pure.

Mapping of stages to Batch jobs:

* a ``foreach`` stage over N items is an array job of N children; N = 1 is a
  plain job. N > ``array_limit`` is split into ``ceil(N / array_limit)``
  balanced chunks (sizes differ by at most one), each its own array job with
  an item ``offset``. Every foreach stage uses the same chunking, so chunk k
  of stage B lines up index for index with chunk k of stage A;
* foreach after foreach: chunk k depends ``N_TO_N`` on the upstream chunk k
  (a plain dependency when either side is a plain job);
* a stage without ``foreach`` after a foreach stage is a join: one plain job
  depending on every upstream chunk (the array parents);
* ``sequential``: the array gets a ``SEQUENTIAL`` dependency, and chunk k
  also depends on chunk k-1 so the order holds across chunks;
* more dependencies than ``dependency_limit`` on one job: a tree of barrier
  jobs (command ``true``), each depending on at most ``dependency_limit``
  jobs. A barrier for an array job is an array of the same size (so
  ``N_TO_N`` links pass through it index by index); for a plain job it is a
  plain job;
* ``allow_failed_items`` joins, and everything downstream of them, are
  ``deferred``: the tracker submits them once their ``waits_for`` jobs ended
  (a Batch dependency on an array would fail the join on any failed item).

Job names are ``<run_id>-<key>`` with ``.`` turned into ``_``, Batch-safe and
at most 128 characters (long names are shortened with a hash suffix).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from chalicelib.pipeline.errors import PlanningError
from chalicelib.pipeline.model import (
    DependencyType,
    JobKind,
    PipelineSpec,
    Plan,
    PlannedDependency,
    PlannedJob,
    Stage,
    batch_safe_name,
    planned_stage,
)

DEFAULT_ARRAY_LIMIT = 10_000  # Batch: arrayProperties.size is 2..10,000
DEFAULT_DEPENDENCY_LIMIT = 20  # Batch: at most 20 dependsOn entries per job
MAX_JOB_NAME = 128
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")


def plan(
    spec: PipelineSpec,
    item_count: int,
    *,
    run_id: str = "run",
    array_limit: int = DEFAULT_ARRAY_LIMIT,
    dependency_limit: int = DEFAULT_DEPENDENCY_LIMIT,
) -> Plan:
    """Maps every stage of ``spec`` over ``item_count`` items to planned Batch jobs.

    Raises:
        PlanningError: bad limits or run id, a foreach stage with no items, or a cycle.
    """
    _check_arguments(spec, item_count, run_id, array_limit, dependency_limit)
    builder = _PlanBuilder(spec, item_count, run_id, array_limit, dependency_limit)
    order = topological_order(spec)
    for name in order:
        builder.add_stage(spec.stage(name))
    return Plan(
        run_id=run_id,
        pipeline=spec.name,
        item_count=item_count,
        stage_order=tuple(order),
        jobs=tuple(builder.jobs),
        array_limit=array_limit,
        dependency_limit=dependency_limit,
        stages=tuple(planned_stage(spec, name, item_count) for name in order),
    )


def topological_order(spec: PipelineSpec) -> list[str]:
    """Stage names with every stage after its upstream; ties keep spec order.

    Raises:
        PlanningError: an ``after`` names an unknown stage, or stages form a cycle.
    """
    names = spec.stage_names
    known = set(names)
    for stage in spec.stages:
        for upstream in stage.after:
            if upstream not in known:
                raise PlanningError(f"stage {stage.name!r}: unknown stage {upstream!r} in after")
    done: list[str] = []
    placed: set[str] = set()
    while len(done) < len(names):
        ready = [
            s.name
            for s in spec.stages
            if s.name not in placed and all(u in placed for u in s.after)
        ]
        if not ready:
            stuck = [n for n in names if n not in placed]
            raise PlanningError(f"stages form a cycle: {', '.join(stuck)}")
        done.append(ready[0])
        placed.add(ready[0])
    return done


def balanced_chunks(item_count: int, array_limit: int) -> list[tuple[int, int]]:
    """Splits ``item_count`` into (offset, size) chunks of at most ``array_limit``, sizes within one."""
    if item_count <= 0:
        return []
    count = -(-item_count // array_limit)
    base, extra = divmod(item_count, count)
    chunks = []
    offset = 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        chunks.append((offset, size))
        offset += size
    return chunks


def job_name(run_id: str, key: str) -> str:
    """Deterministic Batch-safe job name for a planned job key (<=128 chars)."""
    return batch_safe_name(f"{run_id}-{key}", MAX_JOB_NAME)


def _check_arguments(
    spec: PipelineSpec, item_count: int, run_id: str, array_limit: int, dependency_limit: int
) -> None:
    if not _RUN_ID.match(run_id):
        raise PlanningError(
            f"run id {run_id[:40]!r} is not Batch-name-safe "
            "(expected 1-80 characters of letters, digits, '-' and '_', starting alphanumeric)"
        )
    if array_limit < 2:
        raise PlanningError(f"array limit must be at least 2, got {array_limit}")
    if dependency_limit < 2:
        raise PlanningError(f"dependency limit must be at least 2, got {dependency_limit}")
    if item_count < 0:
        raise PlanningError(f"item count must be >= 0, got {item_count}")
    foreach = [s.name for s in spec.stages if s.foreach]
    if foreach and item_count == 0:
        raise PlanningError(f"no items to run: stage {foreach[0]!r} runs once per item")


class _PlanBuilder:
    """Accumulates planned jobs stage by stage (upstream stages are always added first)."""

    def __init__(
        self,
        spec: PipelineSpec,
        item_count: int,
        run_id: str,
        array_limit: int,
        dependency_limit: int,
    ) -> None:
        self.spec = spec
        self.item_count = item_count
        self.run_id = run_id
        self.dependency_limit = dependency_limit
        self.chunks = balanced_chunks(item_count, array_limit)
        self.jobs: list[PlannedJob] = []
        self.stage_jobs: dict[str, list[PlannedJob]] = {}
        self.deferred_stages: set[str] = set()

    def add_stage(self, stage: Stage) -> None:
        deferred = stage.allow_failed_items or any(u in self.deferred_stages for u in stage.after)
        if deferred:
            self.deferred_stages.add(stage.name)
        if stage.foreach:
            self._add_foreach(stage, deferred)
        else:
            self._add_single(stage, deferred)

    def _add_foreach(self, stage: Stage, deferred: bool) -> None:
        own: list[PlannedJob] = []
        multi = len(self.chunks) > 1
        for chunk, (offset, size) in enumerate(self.chunks):
            is_array = size > 1
            deps: list[PlannedDependency] = []
            for upstream in stage.after:
                upstream_jobs = self.stage_jobs[upstream]
                if self.spec.stage(upstream).foreach:
                    peer = upstream_jobs[chunk]
                    both_arrays = is_array and peer.is_array
                    deps.append(
                        PlannedDependency(peer.key, DependencyType.N_TO_N if both_arrays else None)
                    )
                else:
                    deps.extend(PlannedDependency(j.key) for j in upstream_jobs)
            if stage.sequential and chunk > 0:
                deps.append(PlannedDependency(own[-1].key))
            key = f"{stage.name}.c{chunk}" if multi else stage.name
            job = self._finish_job(
                stage=stage.name,
                key=key,
                chunk=chunk,
                offset=offset,
                size=size,
                array_size=size if is_array else None,
                deps=deps,
                sequential=stage.sequential and is_array,
                deferred=deferred,
                waits_for=(),
            )
            own.append(job)
        self.stage_jobs[stage.name] = own

    def _add_single(self, stage: Stage, deferred: bool) -> None:
        deps: list[PlannedDependency] = []
        waits_for: list[str] = []
        for upstream in stage.after:
            upstream_foreach = self.spec.stage(upstream).foreach
            for job in self.stage_jobs[upstream]:
                if stage.allow_failed_items:
                    waits_for.append(job.key)
                    if upstream_foreach:
                        # Failed items are tolerated: wait for the array to end,
                        # but a Batch dependency on it would fail this join.
                        continue
                deps.append(PlannedDependency(job.key))
        job = self._finish_job(
            stage=stage.name,
            key=stage.name,
            chunk=0,
            offset=0,
            size=self.item_count,
            array_size=None,
            deps=deps,
            sequential=False,
            deferred=deferred,
            waits_for=tuple(waits_for),
        )
        self.stage_jobs[stage.name] = [job]

    def _finish_job(
        self,
        *,
        stage: str,
        key: str,
        chunk: int,
        offset: int,
        size: int,
        array_size: int | None,
        deps: list[PlannedDependency],
        sequential: bool,
        deferred: bool,
        waits_for: tuple[str, ...],
    ) -> PlannedJob:
        job = PlannedJob(
            key=key, name=job_name(self.run_id, key), stage=stage, kind=JobKind.STAGE, chunk=chunk,
            offset=offset, size=size, array_size=array_size, depends_on=(), deferred=deferred,
            waits_for=waits_for,
        )
        # SEQUENTIAL takes one dependsOn slot of its own on the final job.
        narrowed = self._narrow(job, deps, self.dependency_limit - (1 if sequential else 0))
        if sequential:
            narrowed.append(PlannedDependency(None, DependencyType.SEQUENTIAL))
        job = replace(job, depends_on=tuple(narrowed))
        self.jobs.append(job)
        return job

    def _narrow(self, job: PlannedJob, deps: list[PlannedDependency], limit: int) -> list[PlannedDependency]:
        """Replaces too many dependencies of ``job`` by barrier levels until at most ``limit`` remain.

        A barrier covers the same items as ``job`` (same stage, chunk, offset, size, array size).
        """
        level = 0
        while len(deps) > limit:
            next_level: list[PlannedDependency] = []
            for index, group in enumerate(_balanced_groups(deps, self.dependency_limit)):
                barrier_key = f"{job.key}.b{level}-{index}"
                self.jobs.append(replace(
                    job, key=barrier_key, name=job_name(self.run_id, barrier_key), kind=JobKind.BARRIER,
                    depends_on=tuple(group), waits_for=(),
                ))
                link = DependencyType.N_TO_N if job.array_size is not None else None
                next_level.append(PlannedDependency(barrier_key, link))
            deps = next_level
            level += 1
        return list(deps)


def _balanced_groups(
    deps: list[PlannedDependency], limit: int
) -> Iterator[list[PlannedDependency]]:
    for offset, size in balanced_chunks(len(deps), limit):
        yield deps[offset : offset + size]
