"""examples/genomics/pipeline.yaml is a valid spec with the issue's stages, compute classes and hand-offs."""

from __future__ import annotations

from pathlib import Path

from chalicelib.pipeline.model import ComputeClass, DependencyType
from chalicelib.pipeline.planner import plan
from chalicelib.pipeline.spec import load_spec

SPEC = Path(__file__).resolve().parents[3] / "examples" / "genomics" / "pipeline.yaml"


def test_spec_loads_with_the_stages_compute_classes_and_resources_stated() -> None:
    spec = load_spec(str(SPEC))
    assert spec.stage_names == ("qc", "align", "call", "joint", "report")
    for name in ("qc", "align", "call"):
        stage = spec.stage(name)
        assert stage.foreach and stage.compute is ComputeClass.SPOT
        assert stage.retry.attempts == 10  # Spot's default retry strategy
        assert stage.build == str(SPEC.parent)
    for name in ("joint", "report"):
        assert not spec.stage(name).foreach and spec.stage(name).compute is ComputeClass.ON_DEMAND
    assert spec.stage("joint").allow_failed_items and not spec.stage("report").allow_failed_items
    assert all(stage.resources.vcpus >= 1 and stage.resources.memory >= 1024 for stage in spec.stages)


def test_plan_hands_items_on_n_to_n_and_defers_the_join() -> None:
    planned = plan(load_spec(str(SPEC)), 8)
    align = planned.jobs_for_stage("align")[0]
    assert align.array_size == 8
    assert [(d.job_key, d.type) for d in align.depends_on] == [("qc", DependencyType.N_TO_N)]
    assert {job.stage for job in planned.deferred_jobs} == {"joint", "report"}
