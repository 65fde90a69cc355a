"""Planner: stage-to-job mapping, chunking, barriers, deferral, names, JSON round trip."""

from __future__ import annotations

import json

import pytest

from chalicelib.pipeline.errors import PlanningError
from chalicelib.pipeline.model import (
    DependencyType,
    JobKind,
    PipelineSpec,
    Plan,
    PlannedDependency,
    PlannedStage,
    Stage,
)
from chalicelib.pipeline.planner import balanced_chunks, job_name, plan, topological_order

N_TO_N = DependencyType.N_TO_N


def stage(name: str, *, foreach: bool = True, after: tuple[str, ...] = (), **extra: object) -> Stage:
    return Stage(name=name, command=("tool",), foreach=foreach, after=after, **extra)  # type: ignore[arg-type]


def spec(*stages: Stage) -> PipelineSpec:
    return PipelineSpec(name="p", stages=stages)


def deps(plan_: Plan, key: str) -> list[tuple[str | None, str | None]]:
    return [(d.job_key, d.type.value if d.type else None) for d in plan_.job(key).depends_on]


def test_foreach_after_foreach_is_n_to_n_and_join_depends_on_the_parent() -> None:
    p = plan(spec(stage("a"), stage("b", after=("a",)), stage("j", foreach=False, after=("b",))), 5)
    assert [job.key for job in p.jobs] == ["a", "b", "j"]
    assert p.job("a").array_size == 5 and p.job("b").array_size == 5
    assert deps(p, "b") == [("a", "N_TO_N")]
    assert p.job("j").array_size is None
    assert deps(p, "j") == [("b", None)]
    assert (p.job("j").offset, p.job("j").size) == (0, 5)


def test_single_item_is_a_plain_job_with_plain_dependencies() -> None:
    p = plan(spec(stage("a"), stage("b", after=("a",), sequential=True)), 1)
    assert p.job("a").array_size is None and p.job("b").array_size is None
    assert deps(p, "b") == [("a", None)]  # no N_TO_N or SEQUENTIAL between plain jobs


def test_sequential_array_gets_a_sequential_dependency() -> None:
    p = plan(spec(stage("a"), stage("b", after=("a",), sequential=True)), 4)
    assert deps(p, "b") == [("a", "N_TO_N"), (None, "SEQUENTIAL")]


def test_25_items_with_array_limit_10_are_three_balanced_aligned_chunks() -> None:
    p = plan(spec(stage("a"), stage("b", after=("a",))), 25, array_limit=10)
    a_chunks = p.jobs_for_stage("a")
    b_chunks = p.jobs_for_stage("b")
    assert [(j.offset, j.size, j.array_size) for j in a_chunks] == [(0, 9, 9), (9, 8, 8), (17, 8, 8)]
    assert [(j.offset, j.size) for j in b_chunks] == [(j.offset, j.size) for j in a_chunks]
    for k, job in enumerate(b_chunks):
        assert job.depends_on == (PlannedDependency(a_chunks[k].key, N_TO_N),)
    assert [j.key for j in a_chunks] == ["a.c0", "a.c1", "a.c2"]


def test_sequential_chunks_chain_across_chunks() -> None:
    p = plan(spec(stage("a", sequential=True)), 25, array_limit=10)
    assert deps(p, "a.c0") == [(None, "SEQUENTIAL")]
    assert deps(p, "a.c1") == [("a.c0", None), (None, "SEQUENTIAL")]
    assert deps(p, "a.c2") == [("a.c1", None), (None, "SEQUENTIAL")]


def test_join_over_many_chunks_gets_a_barrier_tree() -> None:
    p = plan(spec(stage("a"), stage("j", foreach=False, after=("a",))), 26, array_limit=2, dependency_limit=3)
    chunks = p.jobs_for_stage("a")
    assert len(chunks) == 13
    barriers = [job for job in p.jobs if job.kind is JobKind.BARRIER]
    # 13 parents -> 5 barriers (<= 3 each) -> 2 barriers -> the join.
    assert [b.key for b in barriers] == [
        "j.b0-0", "j.b0-1", "j.b0-2", "j.b0-3", "j.b0-4", "j.b1-0", "j.b1-1",
    ]
    for job in p.jobs:
        assert len(job.depends_on) <= 3
    assert deps(p, "j") == [("j.b1-0", None), ("j.b1-1", None)]
    level0 = [d.job_key for b in barriers[:5] for d in b.depends_on]
    assert level0 == [c.key for c in chunks]  # every chunk covered exactly once
    assert all(b.array_size is None and b.stage == "j" for b in barriers)


def test_array_with_too_many_upstreams_gets_array_barriers_keeping_n_to_n() -> None:
    ups = [stage(f"u{i}") for i in range(4)]
    p = plan(spec(*ups, stage("b", after=tuple(u.name for u in ups))), 6, dependency_limit=2)
    barriers = [job for job in p.jobs if job.kind is JobKind.BARRIER]
    assert [b.array_size for b in barriers] == [6, 6]
    assert deps(p, "b.b0-0") == [("u0", "N_TO_N"), ("u1", "N_TO_N")]
    assert deps(p, "b") == [("b.b0-0", "N_TO_N"), ("b.b0-1", "N_TO_N")]


def test_allow_failed_join_is_deferred_with_what_it_waits_for() -> None:
    p = plan(
        spec(
            stage("ref", foreach=False),
            stage("a", after=("ref",)),
            stage("j", foreach=False, after=("a", "ref"), allow_failed_items=True),
            stage("r", foreach=False, after=("j",)),
        ),
        25,
        array_limit=10,
    )
    j = p.job("j")
    assert j.deferred and j.waits_for == ("a.c0", "a.c1", "a.c2", "ref")
    assert deps(p, "j") == [("ref", None)]  # never a Batch dependency on the tolerated array
    assert p.job("r").deferred and deps(p, "r") == [("j", None)]
    assert [job.key for job in p.immediate_jobs] == ["ref", "a.c0", "a.c1", "a.c2"]
    assert deps(p, "a.c1") == [("ref", None)]


def test_jobs_come_dependencies_first() -> None:
    p = plan(spec(stage("c", after=("b",)), stage("a"), stage("b", after=("a",))), 3)
    assert p.stage_order == ("a", "b", "c")
    seen: set[str] = set()
    for job in p.jobs:
        assert all(d.job_key is None or d.job_key in seen for d in job.depends_on)
        seen.add(job.key)


def test_job_names_are_deterministic_batch_safe_and_bounded() -> None:
    p = plan(spec(stage("align")), 25, run_id="r-2024_01", array_limit=10)
    assert [j.name for j in p.jobs] == ["r-2024_01-align_c0", "r-2024_01-align_c1", "r-2024_01-align_c2"]
    assert plan(spec(stage("align")), 25, run_id="r-2024_01", array_limit=10) == p
    long = job_name("r" * 80, "s" * 48 + ".c9999.b3-19")
    assert len(long) == 128 and long == job_name("r" * 80, "s" * 48 + ".c9999.b3-19")
    assert job_name("r" * 80, "s" * 48 + ".c9999.b3-18") != long


def test_plan_round_trips_through_json() -> None:
    p = plan(
        spec(stage("a", sequential=True), stage("j", foreach=False, after=("a",), allow_failed_items=True)),
        30, array_limit=7, dependency_limit=2, run_id="run1",
    )
    again = Plan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert again.job("j").waits_for == p.job("j").waits_for


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [(10, 10, [10]), (11, 10, [6, 5]), (25, 10, [9, 8, 8]), (20_001, 10_000, [6667, 6667, 6667]), (0, 5, [])],
)
def test_balanced_chunks(count: int, limit: int, sizes: list[int]) -> None:
    chunks = balanced_chunks(count, limit)
    assert [size for _, size in chunks] == sizes
    assert sum(sizes) == count and all(size <= limit for size in sizes)


def test_planning_errors_are_clear() -> None:
    with pytest.raises(PlanningError, match="no items to run: stage 'a'"):
        plan(spec(stage("a")), 0)
    with pytest.raises(PlanningError, match="run id"):
        plan(spec(stage("a")), 1, run_id="bad id")
    with pytest.raises(PlanningError, match="array limit"):
        plan(spec(stage("a")), 1, array_limit=1)
    with pytest.raises(PlanningError, match="cycle"):
        topological_order(spec(stage("a", after=("b",)), stage("b", after=("a",))))


def test_join_only_pipeline_plans_without_items() -> None:
    p = plan(spec(stage("a", foreach=False), stage("b", foreach=False, after=("a",))), 0)
    assert [(j.key, j.array_size, j.size) for j in p.jobs] == [("a", None, 0), ("b", None, 0)]


def test_the_plan_carries_each_stage_shape_and_round_trips_it() -> None:
    p = plan(spec(stage("a"), stage("b", after=("a",)), stage("lone", foreach=False),
                  stage("j", foreach=False, after=("b", "lone"), allow_failed_items=True)), 4)
    assert p.stage("a") == PlannedStage("a", foreach=True, units=4)
    assert p.stage("lone") == PlannedStage("lone", foreach=False, units=1)
    # A join gathers only its foreach upstream; tolerant over them, it runs on an item list.
    assert p.stage("j") == PlannedStage("j", foreach=False, units=1, gathers=("b",), item_list=True)
    assert Plan.from_dict(json.loads(json.dumps(p.to_dict()))).stages == p.stages
