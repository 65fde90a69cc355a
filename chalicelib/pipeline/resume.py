"""Reruns that complete a run, as Nextflow's ``-resume`` does: re-run only what failed, never ran or changed.

A rerun is a new run over every item of the earlier one (linked by ``parentRunId``). For each
stage and item the earlier output is reused when it was published, the stage's definition
(command, image, build folder, resources, environment) is unchanged, and everything it read
upstream is reused too; otherwise it runs again. A reused output is not copied: the new run's
folder holds a ``_REF`` object naming the earlier published folder (followed to its origin
through earlier reruns), the runner of that item exits at once, and downstream stages read
through the reference. Joins therefore see every item that now has outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chalicelib.pipeline.manifest import stage_output_uri
from chalicelib.pipeline.model import Item, PipelineSpec, Stage
from chalicelib.pipeline.objectstore import REFERENCE_MARKER, ObjectStore, join_uri, published_origin

DEFINITION_FIELDS = ("command", "image", "build", "resources", "environment")


@dataclass(frozen=True)
class StageResume:
    """What a rerun does with one stage: the item keys it reuses and runs again, and why."""

    stage: str
    foreach: bool
    reused: tuple[str, ...]
    rerun: tuple[str, ...]
    changed: tuple[str, ...]  # definition fields that differ from the earlier run's

    def describe(self) -> str:
        why = f" (its definition changed: {', '.join(self.changed)})" if self.changed else ""
        if not self.foreach:
            return f"stage {self.stage}: {'reused' if self.reused else 'runs again'}{why}"
        shown = ", ".join(self.rerun[:6]) + (", ..." if len(self.rerun) > 6 else "")
        runs = f"{len(self.rerun)} item(s) run again" + (f" ({shown})" if self.rerun else "")
        return f"stage {self.stage}: {runs}, {len(self.reused)} reused{why}"


@dataclass(frozen=True)
class ResumePlan:
    """A rerun's decisions; ``references`` maps a reused output folder of the new run to its origin."""

    parent_run_id: str
    stages: tuple[StageResume, ...]
    references: dict[str, str]

    @property
    def reruns_anything(self) -> bool:
        return any(s.rerun for s in self.stages)

    def lines(self) -> list[str]:
        return [s.describe() for s in self.stages]


def definition_changes(old: Stage | None, new: Stage) -> tuple[str, ...]:
    """The definition fields of ``new`` that differ from ``old`` (a stage the earlier run lacked: all)."""
    if old is None:
        return ("new stage",)
    return tuple(name for name in DEFINITION_FIELDS if getattr(old, name) != getattr(new, name))


def plan_resume(
    *,
    parent_run_id: str,
    parent_prefix: str,
    parent_spec: PipelineSpec,
    spec: PipelineSpec,
    stage_order: Sequence[str],
    items: Sequence[Item],
    new_prefix: str,
    objects: Callable[[str], ObjectStore],
) -> ResumePlan:
    """Decides per stage and item what the rerun reuses from ``parent_prefix`` (see the module doc)."""
    old_stages = {s.name: s for s in parent_spec.stages}
    keys = [item.key for item in items]
    reused: dict[tuple[str, str | None], str] = {}  # (stage, key or None for a join) -> origin folder
    decisions = []
    for name in stage_order:
        stage = spec.stage(name)
        changed = definition_changes(old_stages.get(name), stage)
        done, again = [], []
        for key in (keys if stage.foreach else [None]):
            origin = None if changed else _reusable(objects, parent_prefix, spec, stage, key, keys, reused)
            if origin is not None:
                reused[(name, key)] = origin
                done.append(key or "")
            else:
                again.append(key or "")
        decisions.append(StageResume(name, stage.foreach, tuple(done), tuple(again), changed))
    references = {
        stage_output_uri(new_prefix, stage, key): origin for (stage, key), origin in reused.items()
    }
    return ResumePlan(parent_run_id=parent_run_id, stages=tuple(decisions), references=references)


def _reusable(
    objects: Callable[[str], ObjectStore], parent_prefix: str, spec: PipelineSpec, stage: Stage, key: str | None,
    keys: Sequence[str], reused: dict[tuple[str, str | None], str],
) -> str | None:
    """The published origin of the earlier output, when everything it read upstream is reused too."""
    for upstream in stage.after:
        if spec.stage(upstream).foreach:
            needed = [key] if stage.foreach else list(keys)
            if any((upstream, k) not in reused for k in needed):
                return None
        elif (upstream, None) not in reused:
            return None
    return published_origin(objects, stage_output_uri(parent_prefix, stage.name, key))


def write_references(plan: ResumePlan, objects: Callable[[str], ObjectStore], new_prefix: str) -> None:
    """Writes a ``_REF`` for each reused output into the new run's folder (before its jobs start)."""
    store = objects(new_prefix)
    for folder, origin in plan.references.items():
        store.put_bytes(join_uri(folder, REFERENCE_MARKER), origin.encode("utf-8"))
