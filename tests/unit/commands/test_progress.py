"""Live progress: fed counts per stage and status (never item results), one line per stage change off a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from chalicelib.commands.progress import RunProgress, stage_counts
from chalicelib.pipeline.records import StageRecord, StageStatus


def _stage(name: str, status: StageStatus, items: int = 4, counts: dict[str, int] | None = None) -> StageRecord:
    return StageRecord(run_id="r1", stage=name, status=status, items=items, counts=counts or {})


def test_stage_counts_come_from_item_counts_else_from_the_stage_record() -> None:
    running = _stage("a", StageStatus.RUNNING, counts={"RUNNING": 4})
    assert stage_counts(running, {"a": {"RUNNING": 1, "SUCCEEDED": 3}}) == {"RUNNING": 1, "SUCCEEDED": 3}
    assert stage_counts(running, {"b": {"SUCCEEDED": 1}}) == {"RUNNING": 4}
    assert stage_counts(running, {"a": {"RUNNING": 0}}) == {"RUNNING": 4}  # a count that went to zero is none


def test_a_pipe_gets_one_line_per_stage_status_change_with_its_counts() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with RunProgress(console, "r1") as display:
        display.update([_stage("a", StageStatus.RUNNING), _stage("b", StageStatus.WAITING)],
                       {"a": {"RUNNING": 2, "SUCCEEDED": 1}})
        display.update([_stage("a", StageStatus.RUNNING), _stage("b", StageStatus.WAITING)],
                       {"a": {"RUNNING": 1, "SUCCEEDED": 2}})  # no status change: no new line
        display.update([_stage("a", StageStatus.SUCCEEDED), _stage("b", StageStatus.RUNNING)],
                       {"a": {"SUCCEEDED": 4}, "b": {"RUNNING": 4}})
    assert out.getvalue().splitlines() == [
        "r1 stage a: running (1/4) running 2 · succeeded 1",
        "r1 stage b: waiting (0/4) ",
        "r1 stage a: succeeded (4/4) succeeded 4",
        "r1 stage b: running (0/4) running 4",
    ]


def test_a_terminal_bar_counts_ended_items_as_done() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    display = RunProgress(console, "r1")
    display.update([_stage("a", StageStatus.RUNNING, items=10)], {"a": {"SUCCEEDED": 6, "FAILED": 1, "RUNNING": 3}})
    task = display._progress.tasks[0]
    assert (task.completed, task.total) == (7, 10)
    assert "failed 1" in task.fields["counts"] and "running 3" in task.fields["counts"]
    display.update([_stage("a", StageStatus.FAILED, items=10)], {"a": {"SUCCEEDED": 9, "FAILED": 1}})
    assert display._progress.tasks[0].completed == 10
