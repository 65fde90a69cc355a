"""SQLite run store: item counts per stage and status, kept with the item results they count."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chalicelib.local.runstore import SqliteRunStore
from chalicelib.pipeline.records import ItemResult


def _result(index: int, status: str, stage: str = "a", run_id: str = "r1") -> ItemResult:
    return ItemResult(run_id, stage, index, status, f"j:{index}")


def _counted(store: SqliteRunStore, run_id: str = "r1") -> dict[str, dict[str, int]]:
    """What the items table says, counted the slow way, to hold item_counts to it."""
    counts: dict[str, dict[str, int]] = {}
    for result in store.list_item_results(run_id):
        stage = counts.setdefault(result.stage, {})
        stage[result.status] = stage.get(result.status, 0) + 1
    return counts


def test_counts_follow_each_item_as_it_moves_forward(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.db")
    store.put_item_results([_result(i, "RUNNABLE") for i in range(4)])
    assert store.item_counts("r1") == {"a": {"RUNNABLE": 4}}
    store.put_item_results([_result(0, "RUNNING"), _result(1, "RUNNING")])
    store.put_item_results([_result(0, "SUCCEEDED"), _result(2, "FAILED"), _result(0, "SUCCEEDED", stage="b")])
    assert store.item_counts("r1") == {"a": {"RUNNABLE": 1, "RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1},
                                       "b": {"SUCCEEDED": 1}}
    assert store.item_counts("r1") == _counted(store)
    assert store.item_counts("other") == {}


def test_ignored_moves_and_repeats_in_one_call_count_once(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.db")
    store.put_item_results([_result(0, "SUCCEEDED"), _result(1, "RUNNING")])
    # A regression, a duplicate, and one item twice in one call (RUNNING then SUCCEEDED).
    store.put_item_results([_result(0, "RUNNING"), _result(0, "SUCCEEDED"), _result(1, "RUNNING"),
                            _result(2, "RUNNING"), _result(2, "SUCCEEDED")])
    assert store.item_counts("r1") == {"a": {"SUCCEEDED": 2, "RUNNING": 1}}
    assert store.item_counts("r1") == _counted(store)


def test_counts_are_per_run(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.db")
    store.put_item_results([_result(0, "SUCCEEDED", run_id="r1"), _result(0, "FAILED", run_id="r2")])
    assert store.item_counts("r1") == {"a": {"SUCCEEDED": 1}}
    assert store.item_counts("r2") == {"a": {"FAILED": 1}}


def test_a_runs_file_from_before_counts_gets_them_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SqliteRunStore(path)
    store.put_item_results([_result(0, "SUCCEEDED"), _result(1, "FAILED"), _result(2, "SUCCEEDED")])
    store.close()
    with sqlite3.connect(path) as old:  # as an older conveyor left it: items, no counts table
        old.execute("DROP TABLE item_counts")
    first, second = SqliteRunStore(path), SqliteRunStore(path)  # two processes opening it
    assert first.item_counts("r1") == {"a": {"SUCCEEDED": 2, "FAILED": 1}}
    assert second.item_counts("r1") == first.item_counts("r1")
    second.put_item_results([_result(3, "RUNNING")])
    assert first.item_counts("r1") == {"a": {"SUCCEEDED": 2, "FAILED": 1, "RUNNING": 1}}
