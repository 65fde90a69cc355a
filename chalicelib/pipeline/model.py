"""Frozen dataclasses: PipelineSpec, Stage, RetryPolicy, Item, Plan, PlannedJob.

These values are the contract between the spec loader, the planner, the
submitter, the tracker and the runner. They are immutable and plain, so the
planner stays pure and a Plan can be stored between Lambda calls as JSON
(``Plan.to_dict`` / ``Plan.from_dict``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from chalicelib.pipeline.item import Item as Item  # re-exported: defined apart for the runner


class ComputeClass(str, Enum):
    """Where a stage runs; each class maps to one Batch job queue."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"
    GPU = "gpu"


class DependencyType(str, Enum):
    """Batch ``dependsOn.type`` values (AWS spellings). A plain dependency has no type."""

    N_TO_N = "N_TO_N"
    SEQUENTIAL = "SEQUENTIAL"


class JobKind(str, Enum):
    """What a planned job is: a stage's own work, or a barrier that only narrows fan-in."""

    STAGE = "stage"
    BARRIER = "barrier"


@dataclass(frozen=True)
class ComputeLimits:
    """The largest single job a compute class can hold (one instance's worth)."""

    max_vcpus: int
    max_memory: int  # MiB
    max_gpus: int


# Largest instance each class can place one job on. Spot/on-demand: the big
# general-purpose sizes (96 vCPU, 768 GiB); gpu: an 8-GPU p4d/p5-class host.
COMPUTE_LIMITS: Mapping[ComputeClass, ComputeLimits] = {
    ComputeClass.SPOT: ComputeLimits(max_vcpus=96, max_memory=768 * 1024, max_gpus=0),
    ComputeClass.ON_DEMAND: ComputeLimits(max_vcpus=96, max_memory=768 * 1024, max_gpus=0),
    ComputeClass.GPU: ComputeLimits(max_vcpus=192, max_memory=2048 * 1024, max_gpus=8),
}


def batch_safe_name(name: str, limit: int = 128) -> str:
    """``name`` with characters Batch refuses replaced by ``_``, cut to ``limit`` with a hash kept unique.

    The one rule for every Batch name Conveyor derives (job names, job definition names).
    """
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if len(safe) <= limit:
        return safe
    digest = hashlib.sha256(safe.encode()).hexdigest()[:12]
    return f"{safe[: limit - 13]}-{digest}"


@dataclass(frozen=True)
class RetryRule:
    """One Batch ``evaluateOnExit`` entry; every condition given must match (AND)."""

    action: str  # "RETRY" | "EXIT"
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None

    def to_batch(self) -> dict[str, str]:
        """The rule as a Batch ``evaluateOnExit`` entry (the only form it is written in)."""
        data = {"action": self.action}
        for name, batch_name in (("on_status_reason", "onStatusReason"), ("on_reason", "onReason"),
                                 ("on_exit_code", "onExitCode")):
            value = getattr(self, name)
            if value is not None:
                data[batch_name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryRule:
        """A rule from the spec's ``evaluate_on_exit`` entry (snake_case keys)."""
        return cls(
            action=str(data["action"]).upper(),
            on_status_reason=data.get("on_status_reason"),
            on_reason=data.get("on_reason"),
            on_exit_code=data.get("on_exit_code"),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Batch ``retryStrategy``: total attempts (1..10) and ordered exit rules (first match wins)."""

    attempts: int = 1
    evaluate_on_exit: tuple[RetryRule, ...] = ()


@dataclass(frozen=True)
class Resources:
    """What one job (or one array child) asks for: vCPUs, memory in MiB, GPUs."""

    vcpus: int = 1
    memory: int = 2048
    gpus: int = 0


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline, after defaults are applied.

    ``build`` is an absolute folder path (resolved against the spec's folder).
    ``foreach`` is True when the stage runs once per item (an array job);
    otherwise it runs once (a join when it follows a foreach stage).
    """

    name: str
    command: tuple[str, ...]
    image: str | None = None
    build: str | None = None
    resources: Resources = Resources()
    compute: ComputeClass = ComputeClass.SPOT
    retry: RetryPolicy = RetryPolicy()
    timeout: int | None = None  # seconds per attempt, >= 60
    environment: tuple[tuple[str, str], ...] = ()
    foreach: bool = False
    after: tuple[str, ...] = ()
    sequential: bool = False
    allow_failed_items: bool = False

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)


@dataclass(frozen=True)
class ItemsSource:
    """Where items come from: a ``source`` folder/URI prefix with a glob, or a manifest.

    ``group`` is a regex with a named group ``key``; files whose relative path
    matches it are grouped into one item per distinct key (e.g.
    ``(?P<key>.+)_R[12]\\.fastq\\.gz`` pairs reads). Without ``group`` every file
    is its own item keyed by its name.
    """

    source: str | None = None
    pattern: str = "*"
    group: str | None = None
    manifest: str | None = None


@dataclass(frozen=True)
class Trigger:
    """How a run starts on AWS: one run per manifest upload or per object; optional schedule."""

    mode: str = "per_manifest"  # "per_manifest" | "per_object"
    schedule: str | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: stages in spec order, defaults applied."""

    name: str
    stages: tuple[Stage, ...]
    items: ItemsSource = ItemsSource()
    trigger: Trigger = Trigger()
    base_dir: str | None = None  # folder of the spec file, for relative paths

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)


@dataclass(frozen=True)
class PlannedDependency:
    """One Batch ``dependsOn`` entry, naming another planned job by its key.

    ``type`` None is a plain dependency; SEQUENTIAL has no ``job_key``.
    """

    job_key: str | None
    type: DependencyType | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job_key": self.job_key, "type": self.type.value if self.type else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedDependency:
        raw = data.get("type")
        return cls(job_key=data.get("job_key"), type=DependencyType(raw) if raw else None)


@dataclass(frozen=True)
class PlannedJob:
    """One SubmitJob the run needs.

    ``offset``/``size`` are the items this job covers: an array child i handles
    item ``offset + i``; a join covers all items (offset 0, size = item count).
    ``array_size`` is None for a plain job. A ``deferred`` job is not submitted
    up front: the tracker submits it once every job in ``waits_for`` has ended
    (whatever its status) and every job in ``depends_on`` has been submitted.
    """

    key: str
    name: str
    stage: str
    kind: JobKind
    chunk: int
    offset: int
    size: int
    array_size: int | None
    depends_on: tuple[PlannedDependency, ...] = ()
    deferred: bool = False
    waits_for: tuple[str, ...] = ()

    @property
    def is_array(self) -> bool:
        return self.array_size is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "stage": self.stage,
            "kind": self.kind.value,
            "chunk": self.chunk,
            "offset": self.offset,
            "size": self.size,
            "array_size": self.array_size,
            "depends_on": [dep.to_dict() for dep in self.depends_on],
            "deferred": self.deferred,
            "waits_for": list(self.waits_for),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedJob:
        return cls(
            key=data["key"],
            name=data["name"],
            stage=data["stage"],
            kind=JobKind(data["kind"]),
            chunk=int(data["chunk"]),
            offset=int(data["offset"]),
            size=int(data["size"]),
            array_size=None if data.get("array_size") is None else int(data["array_size"]),
            depends_on=tuple(PlannedDependency.from_dict(d) for d in data.get("depends_on", ())),
            deferred=bool(data.get("deferred", False)),
            waits_for=tuple(data.get("waits_for", ())),
        )


@dataclass(frozen=True)
class PlannedStage:
    """How a stage runs, decided once by the planner; code after planning reads this, not the spec.

    ``foreach``: one unit per item (array children); otherwise the stage is a join, one job over
    every item. ``units``: what its status reports on (the item count, or 1 for a join).
    ``gathers``: the foreach stages a join collects (in ``after`` order). ``item_list``: a
    tolerant join (``allow_failed_items`` over foreach stages) that runs on the list of items
    that succeeded there, which the tracker writes before submitting it.
    """

    name: str
    foreach: bool
    units: int
    gathers: tuple[str, ...] = ()
    item_list: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "foreach": self.foreach, "units": self.units, "gathers": list(self.gathers),
                "item_list": self.item_list}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedStage:
        return cls(name=str(data["name"]), foreach=bool(data["foreach"]), units=int(data["units"]),
                   gathers=tuple(data.get("gathers", ())), item_list=bool(data.get("item_list", False)))


def planned_stage(spec: PipelineSpec, name: str, item_count: int) -> PlannedStage:
    """The one derivation of a stage's shape from the spec (the planner calls it once per stage)."""
    stage = spec.stage(name)
    gathers = () if stage.foreach else tuple(u for u in stage.after if spec.stage(u).foreach)
    return PlannedStage(
        name=name, foreach=stage.foreach, units=item_count if stage.foreach else 1, gathers=gathers,
        item_list=stage.allow_failed_items and bool(gathers),
    )


@dataclass(frozen=True)
class Plan:
    """Every job of one run, dependencies before dependents (submit in this order)."""

    run_id: str
    pipeline: str
    item_count: int
    stage_order: tuple[str, ...]
    jobs: tuple[PlannedJob, ...]
    array_limit: int = 10_000
    dependency_limit: int = 20
    stages: tuple[PlannedStage, ...] = ()
    _index: dict[str, PlannedJob] = field(default_factory=dict, compare=False, repr=False)

    def stage(self, name: str) -> PlannedStage:
        """The planned shape of a stage (KeyError for a stage not in the plan)."""
        for planned in self.stages:
            if planned.name == name:
                return planned
        raise KeyError(name)

    def job(self, key: str) -> PlannedJob:
        if not self._index:
            self._index.update({job.key: job for job in self.jobs})
        return self._index[key]

    def jobs_for_stage(self, stage: str, *, include_barriers: bool = False) -> tuple[PlannedJob, ...]:
        """The stage's own jobs (its chunks), in chunk order; barriers only if asked."""
        return tuple(
            job
            for job in self.jobs
            if job.stage == stage and (include_barriers or job.kind is JobKind.STAGE)
        )

    @property
    def immediate_jobs(self) -> tuple[PlannedJob, ...]:
        return tuple(job for job in self.jobs if not job.deferred)

    @property
    def deferred_jobs(self) -> tuple[PlannedJob, ...]:
        return tuple(job for job in self.jobs if job.deferred)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "item_count": self.item_count,
            "stage_order": list(self.stage_order),
            "array_limit": self.array_limit,
            "dependency_limit": self.dependency_limit,
            "stages": [stage.to_dict() for stage in self.stages],
            "jobs": [job.to_dict() for job in self.jobs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            run_id=data["run_id"],
            pipeline=data["pipeline"],
            item_count=int(data["item_count"]),
            stage_order=tuple(data["stage_order"]),
            jobs=tuple(PlannedJob.from_dict(j) for j in data["jobs"]),
            array_limit=int(data.get("array_limit", 10_000)),
            dependency_limit=int(data.get("dependency_limit", 20)),
            stages=tuple(PlannedStage.from_dict(s) for s in data.get("stages", ())),
        )
