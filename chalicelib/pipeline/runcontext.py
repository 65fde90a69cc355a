"""Run context: what the tracker needs about a run (spec, plan, queues, definitions), kept as a JSON snapshot in the run record.

The tracker is stateless between events (on AWS each event is a Lambda call), so everything
it needs to interpret a job event and to submit a deferred join is stored with the run:
the validated spec document (rebuilt into a PipelineSpec with the planner's defaults), the
plan, the queue per compute class and the job definition per stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chalicelib.pipeline.model import PipelineSpec, Plan, planned_stage
from chalicelib.pipeline.payloads import SubmitContext
from chalicelib.pipeline.records import RunRecord
from chalicelib.pipeline.spec import build_spec


@dataclass(frozen=True)
class RunContext:
    """A run's spec, plan and submit context, rebuilt from its record."""

    run: RunRecord
    document: dict[str, Any]
    spec: PipelineSpec
    plan: Plan
    submit: SubmitContext
    manifest: str

    def stage_items(self, stage: str) -> int:
        """Units a stage reports on: every item for a foreach stage, 1 for a join."""
        return self.plan.stage(stage).units


def to_snapshot(
    *,
    document: Mapping[str, Any],
    base_dir: str,
    plan: Plan,
    submit: SubmitContext,
    manifest: str,
) -> dict[str, Any]:
    """The JSON-able snapshot stored as ``RunRecord.spec``."""
    return {
        "document": dict(document),
        "base_dir": base_dir,
        "plan": plan.to_dict(),
        "queues": dict(submit.queues),
        "definitions": dict(submit.definitions),
        "python": submit.python,
        "manifest": manifest,
    }


def from_record(run: RunRecord) -> RunContext:
    """Rebuilds the context of a run from its stored snapshot.

    Raises:
        KeyError: the record has no snapshot (not created by ``service.start_run``).
    """
    snap = run.spec
    document = snap["document"]
    spec = build_spec(document, Path(snap["base_dir"]))
    plan = Plan.from_dict(snap["plan"])
    if not plan.stages:  # a run planned before plans carried their stages' shapes
        plan = replace(plan, stages=tuple(planned_stage(spec, n, plan.item_count) for n in plan.stage_order))
    submit = SubmitContext(
        run_id=run.run_id,
        prefix=run.prefix,
        queues=snap["queues"],
        definitions=snap["definitions"],
        python=snap.get("python", "python"),
    )
    return RunContext(
        run=run, document=document, spec=spec, plan=plan, submit=submit, manifest=snap["manifest"]
    )
