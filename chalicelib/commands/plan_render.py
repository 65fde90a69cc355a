"""Text rendering for `conveyor validate` and `conveyor plan`: issue lists and job tables."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.pipeline.errors import SpecIssue
from chalicelib.pipeline.model import JobKind, PipelineSpec, Plan, PlannedDependency, PlannedJob


def render_issues(issues: Sequence[SpecIssue]) -> str:
    """One line per issue (``path: message [rule]``) and a count."""
    lines = [f"{issue.path}: {issue.message} [{issue.rule}]" for issue in issues]
    count = len(issues)
    lines.append(f"{count} problem{'s' if count != 1 else ''} found")
    return "\n".join(lines)


def render_valid(spec: PipelineSpec) -> str:
    names = ", ".join(spec.stage_names)
    count = len(spec.stages)
    return f"OK: pipeline {spec.name!r} is valid ({count} stage{'s' if count != 1 else ''}: {names})"


def _items_cell(job: PlannedJob, plan: Plan) -> str:
    if job.size == plan.item_count and job.offset == 0 and not job.is_array and job.size != 1:
        return f"all ({job.size})"
    if job.size == 1:
        return str(job.offset)
    return f"{job.offset}-{job.offset + job.size - 1}"


def _dependency_cell(dep: PlannedDependency) -> str:
    if dep.job_key is None:
        return dep.type.value if dep.type else "?"
    return f"{dep.job_key} ({dep.type.value})" if dep.type else dep.job_key


def _notes(job: PlannedJob) -> str:
    notes = []
    if job.kind is JobKind.BARRIER:
        notes.append("barrier")
    if job.deferred:
        waits = f", after {len(job.waits_for)} job(s) end" if job.waits_for else ""
        notes.append(f"deferred: submitted by the tracker{waits}")
    return "; ".join(notes)


def render_plan(plan: Plan) -> str:
    """A table of the planned jobs in submission order, then totals."""
    header = (
        f"plan for pipeline {plan.pipeline!r}: {plan.item_count} item(s), run id {plan.run_id!r}, "
        f"array limit {plan.array_limit}, dependency limit {plan.dependency_limit}"
    )
    rows = [("JOB", "STAGE", "ITEMS", "ARRAY", "DEPENDS ON", "NOTES")]
    for job in plan.jobs:
        deps = ", ".join(_dependency_cell(d) for d in job.depends_on) or "-"
        array = str(job.array_size) if job.array_size else "-"
        rows.append((job.key, job.stage, _items_cell(job, plan), array, deps, _notes(job)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [header, ""]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    barriers = sum(1 for j in plan.jobs if j.kind is JobKind.BARRIER)
    deferred = len(plan.deferred_jobs)
    lines.append("")
    lines.append(
        f"{len(plan.jobs)} job(s): {len(plan.immediate_jobs)} submitted up front, "
        f"{deferred} deferred, {barriers} barrier(s)"
    )
    return "\n".join(lines)
