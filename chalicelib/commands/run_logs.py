"""`conveyor logs --run RUN_ID [--stage S] [--item KEY]`: a run's job logs by stage and item key, not job id.

Item results in the run store name the Batch job (array child ``<id>:<index>``) that ran each
item; this resolves a run, stage and item key to those jobs. ``--run`` alone shows the failed
items' logs, the usual reason to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chalicelib.commands.run_summary import item_keys
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.local.runtime import RUNS_DB
from chalicelib.pipeline.run_end import DEPENDENCY_FAILED


class RunLogError(LookupError):
    """The run, stage or item asked for is not there; the message says what is."""


@dataclass(frozen=True)
class ItemLog:
    stage: str
    item: str
    job_id: str
    status: str


def find_item_jobs(data_dir: Path, run_id: str, stage: str | None, item: str | None) -> list[ItemLog]:
    """The jobs that ran the run's matching items (only failed ones when neither stage nor item is given)."""
    path = data_dir / RUNS_DB
    if not path.exists():
        raise RunLogError(f"no runs in {data_dir} (give --data-dir)")
    store = SqliteRunStore(path)
    try:
        run = store.get_run(run_id)
        if run is None:
            raise RunLogError(f"no run {run_id!r} in {data_dir}")
        stages = [s.stage for s in store.list_stages(run_id)]
        if stage is not None and stage not in stages:
            raise RunLogError(f"run {run_id} has no stage {stage!r}; its stages: {', '.join(stages)}")
        keys = item_keys(run)
        found = []
        for result in store.list_item_results(run_id, stage) if stage else store.list_item_results(run_id):
            key = keys[result.index] if result.index < len(keys) else str(result.index)
            if item is not None and item not in (key, str(result.index)):
                continue
            if stage is None and item is None and (result.status != "FAILED" or result.reason == DEPENDENCY_FAILED):
                continue  # --run alone: the items that failed themselves, not those never run
            if result.job_id:
                found.append(ItemLog(result.stage, key, result.job_id, result.status))
    finally:
        store.close()
    order = {name: n for n, name in enumerate(stages)}
    found.sort(key=lambda entry: order.get(entry.stage, len(order)))
    if not found:
        what = f"item {item!r}" if item else "failed item" if stage is None else "item"
        raise RunLogError(f"run {run_id}: no {what} with a job" + (f" in stage {stage}" if stage else ""))
    return found
