"""`conveyor run-status` shows a running stage's counts as its item results say now, from the store's counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.cli import main
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.pipeline.records import ItemResult, RunRecord, RunStatus, StageRecord, StageStatus


def test_a_running_stage_shows_its_live_counts_an_ended_one_its_record(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = SqliteRunStore(tmp_path / "runs.sqlite3")
    store.create_run(RunRecord(run_id="r1", pipeline="p", status=RunStatus.RUNNING, created_at=1, prefix="file:///x",
                               items=3, spec={}, source="cli"))
    store.put_stage(StageRecord("r1", "a", StageStatus.SUCCEEDED, 3, counts={"SUCCEEDED": 3}, started_at=1, ended_at=2))
    store.put_stage(StageRecord("r1", "b", StageStatus.RUNNING, 3, counts={"RUNNING": 1}, started_at=2))
    store.put_stage(StageRecord("r1", "c", StageStatus.WAITING, 1, deferred=True))
    store.put_item_results([ItemResult("r1", "a", i, "SUCCEEDED", f"a:{i}") for i in range(3)])
    store.put_item_results([ItemResult("r1", "b", 0, "SUCCEEDED", "b:0"), ItemResult("r1", "b", 1, "SUCCEEDED", "b:1"),
                            ItemResult("r1", "b", 2, "RUNNING", "b:2")])
    assert main(["run-status", "r1", "--data-dir", str(tmp_path), "--json"]) == 0
    stages = {s["stage"]: s["counts"] for s in json.loads(capsys.readouterr().out)["stages"]}
    assert stages == {"a": {"SUCCEEDED": 3}, "b": {"SUCCEEDED": 2, "RUNNING": 1}, "c": {}}
