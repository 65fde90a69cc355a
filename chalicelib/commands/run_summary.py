"""End-of-run summary for the CLI: time per stage, outputs location, and each failure with its log tail.

Dependency failures (Batch's "Dependent Job failed": an item skipped because its upstream
item failed) are counted per stage rather than listed, so the root causes stand out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.manifest import read_manifest
from chalicelib.pipeline.records import RunRecord, StageRecord

LOG_TAIL_LINES = 12
DEPENDENCY_FAILED = "Dependent Job failed"


def format_duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(0.0, (end - start) / 1000)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def item_keys(run: RunRecord) -> list[str]:
    """Item keys by index, from the run's manifest (empty when unreadable)."""
    manifest = run.spec.get("manifest")
    if not manifest:
        return []
    try:
        return [item.key for item in read_manifest(open_store(manifest.rsplit("/", 1)[0]), manifest)]
    except PipelineError:
        return []


def log_tail(read_log: Callable[[str], str], job_id: str, lines: int = LOG_TAIL_LINES) -> str:
    if not job_id:
        return ""
    try:
        text = read_log(job_id)
    except Exception as err:
        return f"(no log: {err})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def stage_table(run: RunRecord, stages: Sequence[StageRecord]) -> Table:
    table = Table(title=f"run {run.run_id} ({run.pipeline}): {run.status.value}", title_justify="left")
    for column in ("stage", "status", "items", "succeeded", "failed", "time"):
        table.add_column(column, justify="right" if column in ("items", "succeeded", "failed", "time") else "left")
    for stage in stages:
        table.add_row(
            stage.stage, stage.status.value, str(stage.items),
            str(stage.counts.get("SUCCEEDED", 0)), str(stage.counts.get("FAILED", 0)),
            format_duration(stage.started_at, stage.ended_at),
        )
    return table


def print_summary(
    console: Console,
    run: RunRecord,
    stages: Sequence[StageRecord],
    read_log: Callable[[str], str] | None,
) -> None:
    """Prints the stage table, the outputs location and every root-cause failure."""
    console.print(stage_table(run, stages))
    console.print(
        f"time: {format_duration(run.created_at, run.ended_at)}   outputs: {run.prefix}",
        highlight=False, soft_wrap=True,
    )
    failures: list[dict[str, Any]] = list(run.failures)
    if not failures:
        return
    keys = item_keys(run)
    roots = [f for f in failures if not f.get("dependency")]
    skipped: dict[str, int] = {}
    for failure in failures:
        if failure.get("dependency"):
            skipped[failure["stage"]] = skipped.get(failure["stage"], 0) + 1
    console.print(f"[red]{len(roots)} failure(s)[/]", highlight=False, soft_wrap=True)
    for failure in roots:
        if not failure.get("stage"):  # a run-level cause (a stage nothing tolerates, a timeout, a cancel)
            console.print(f"- run: {failure.get('reason') or 'failed'}", highlight=False, markup=False,
                          soft_wrap=True)
            continue
        job = f" [job {failure['jobId']}]" if failure.get("jobId") else ""
        console.print(
            f"- stage {failure['stage']}, item {describe_item(failure, keys, stages)}{job}: "
            f"{failure.get('reason') or 'failed'}"
            + (f" (exit code {failure['exitCode']})" if failure.get("exitCode") is not None else ""),
            highlight=False, markup=False, soft_wrap=True,
        )
        tail = log_tail(read_log, failure.get("jobId", "")) if read_log else ""
        if tail:
            console.print(
                "    " + tail.replace("\n", "\n    "), highlight=False, markup=False, style="dim", soft_wrap=True
            )
    for stage, count in skipped.items():
        console.print(
            f"- stage {stage}: {count} item(s) not run because an upstream item failed",
            highlight=False, soft_wrap=True,
        )
    if run.failure_count > len(failures):
        console.print(f"- and {run.failure_count - len(failures)} more failure(s) (only the first are kept)",
                      highlight=False, soft_wrap=True)
    if any(f.get("jobId") for f in roots):
        console.print(f"full logs: conveyor logs --run {run.run_id} --stage STAGE --item ITEM",
                      highlight=False, markup=False, soft_wrap=True)


def describe_item(failure: dict[str, Any], keys: Sequence[str], stages: Sequence[StageRecord]) -> str:
    index = int(failure.get("item") or 0)
    is_join = any(s.stage == failure["stage"] and s.items == 1 for s in stages) and len(keys) != 1
    if is_join:
        return "(join)"
    return f"{keys[index]!r}" if index < len(keys) else f"#{index}"
