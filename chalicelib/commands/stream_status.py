"""`run-status` of a stream run: item counts per stage and status, and the dead-lettered items with reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chalicelib.local.item_store import SqliteItemStore
from chalicelib.local.runtime import RUNS_DB
from chalicelib.pipeline.records import RunRecord
from chalicelib.pipeline.stream.records import ItemStatus

STATUSES = [status.value for status in ItemStatus]


def stream_items(data_dir: Path, run: RunRecord) -> dict[str, Any]:
    store = SqliteItemStore(data_dir / RUNS_DB)
    try:
        dead = [{"stage": r.stage, "item": r.key, "receives": r.receives, "reason": r.reason}
                for r in store.list_items(run.run_id, limit=100_000) if r.status is ItemStatus.DEAD_LETTERED]
        return {"counts": store.count_items(run.run_id), "deadLettered": dead}
    finally:
        store.close()


def print_stream_status(console: Console, data_dir: Path, run: RunRecord) -> None:
    items = stream_items(data_dir, run)
    table = Table(title=f"stream {run.run_id} ({run.status.value}): items per stage")
    table.add_column("stage", no_wrap=True)
    for status in STATUSES:
        table.add_column(status.lower().replace("_", " "), justify="right")
    for stage in run.spec.get("stages", []):
        counts = items["counts"].get(stage.get("name"), {})
        table.add_row(stage.get("name"), *(str(counts.get(status, 0)) for status in STATUSES))
    console.print(table)
    for dead in items["deadLettered"][:20]:
        console.print(f"dead-lettered: {dead['stage']}/{dead['item']} after {dead['receives']} receive(s): "
                      f"{dead['reason']}", highlight=False, soft_wrap=True)
