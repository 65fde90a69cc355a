"""Live run progress for the CLI: one rich progress bar per stage with item counts by Batch status.

On a terminal it redraws in place; otherwise (pipes, tests) it prints one line per stage
status change, so logs stay readable. It is fed counts per stage and status (the run store
keeps them as item results arrive), never the item results themselves: a refresh costs the
same for 30 items as for 30,000.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from chalicelib.pipeline.records import StageRecord

ItemCounts = Mapping[str, Mapping[str, int]]  # stage -> status -> items

REFRESH_PER_SECOND = 4
_STATUS_ORDER = ("PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "STARTING": "cyan"}


def stage_counts(stage: StageRecord, item_counts: ItemCounts) -> Counter[str]:
    """Items of a stage per status: from item results when there are some, else the stage's counts."""
    own = Counter({status: n for status, n in item_counts.get(stage.stage, {}).items() if n > 0})
    return own if own else Counter(stage.counts)


def describe_counts(counts: Counter[str]) -> str:
    parts = []
    for status in _STATUS_ORDER:
        if counts.get(status):
            style = _STYLE.get(status)
            text = f"{status.lower()} {counts[status]}"
            parts.append(f"[{style}]{text}[/]" if style else text)
    return " · ".join(parts)


class RunProgress:
    """Progress display of one run; ``update`` is called with the stages and item counts read afresh."""

    def __init__(self, console: Console, run_id: str) -> None:
        self._console = console
        self._run_id = run_id
        self._live = console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description:<16}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]:<10}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self._live,
            # As often as the run command reads the store (POLL_SECONDS): redrawing more often
            # shows nothing new, and each redraw costs CPU for as long as the run lasts.
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._tasks: dict[str, TaskID] = {}
        self._last: dict[str, str] = {}

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, stages: Sequence[StageRecord], item_counts: ItemCounts) -> None:
        for stage in stages:
            counts = stage_counts(stage, item_counts)
            done = counts.get("SUCCEEDED", 0) + counts.get("FAILED", 0)
            if stage.status.is_terminal:
                done = stage.items
            status, text = stage.status.value.lower(), describe_counts(counts)
            if set(counts) == {stage.status.value}:
                text = ""  # "8/8 succeeded" says it; "succeeded 8" after it repeats it
            if stage.stage not in self._tasks:
                self._tasks[stage.stage] = self._progress.add_task(
                    stage.stage, total=stage.items, status=status, counts=text
                )
            self._progress.update(
                self._tasks[stage.stage], completed=done, total=stage.items, status=status, counts=text
            )
            if not self._live and self._last.get(stage.stage) != stage.status.value:
                self._last[stage.stage] = stage.status.value
                self._console.print(
                    f"{self._run_id} stage {stage.stage}: {stage.status.value.lower()} "
                    f"({done}/{stage.items}) {describe_counts(counts)}",
                    highlight=False, soft_wrap=True,
                )
