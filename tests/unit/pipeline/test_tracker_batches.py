"""Tracker: events of jobs not recorded yet are kept and replayed; a page of child events is written at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from chalicelib.local.tracker_relay import track_page
from chalicelib.pipeline.records import JobRecord
from tests.unit.pipeline.test_tracker import Env


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _child(env: Env, parent: str, index: int, status: str, **extra: Any) -> dict[str, Any]:
    return env.event(f"{parent}:{index}", status, arrayProperties={"index": index}, **extra)


def _unrecord(env: Env, key: str) -> JobRecord:
    """Takes a job out of the run store, as it is between SubmitJob and the submitter's record."""
    job = env.store.get_job("r1", key)
    assert job is not None
    with sqlite3.connect(env.store._path) as db:
        db.execute("DELETE FROM jobs WHERE job_id=?", (job.job_id,))
    return job


def _items(env: Env, stage: str = "a") -> dict[int, str]:
    return {r.index: r.status for r in env.store.list_item_results("r1", stage)}


def test_children_that_ran_before_their_parent_was_recorded_are_replayed_at_its_next_event(env: Env) -> None:
    parent = _unrecord(env, "a")
    a = parent.job_id
    env.tracker.handle(_child(env, a, 0, "RUNNING"))
    env.tracker.handle(_child(env, a, 1, "RUNNING"))
    env.tracker.handle(_child(env, a, 1, "SUCCEEDED"))
    assert env.store.get_stage("r1", "a").status.value == "SUBMITTED" and _items(env) == {}
    env.store.put_job(parent)  # the submitter records it
    env.tracker.handle(_child(env, a, 2, "RUNNABLE"))
    assert env.store.get_stage("r1", "a").status.value == "RUNNING"
    assert _items(env) == {0: "RUNNING", 1: "SUCCEEDED", 2: "RUNNABLE"}
    assert env.store.item_counts("r1") == {"a": {"RUNNING": 1, "SUCCEEDED": 1, "RUNNABLE": 1}}
    assert env.kinds() == [("Stage", "a", "RUNNING")]


def test_a_stage_whose_children_all_succeeded_unseen_shows_running(env: Env) -> None:
    parent = _unrecord(env, "a")
    for index in range(3):  # only the furthest status of each child is kept
        for status in ("STARTING", "RUNNING", "SUCCEEDED"):
            env.tracker.handle(_child(env, parent.job_id, index, status))
    env.store.put_job(parent)
    env.tracker.reconcile("r1")  # no event of it comes: the periodic reconcile replays them
    assert _items(env) == {0: "SUCCEEDED", 1: "SUCCEEDED", 2: "SUCCEEDED"}
    assert env.store.get_stage("r1", "a").status.value == "RUNNING"


def test_a_plain_jobs_end_before_its_record_is_replayed_and_ends_the_run(env: Env) -> None:
    env.tracker.handle(env.event(env.job_id("a"), "SUCCEEDED"))
    join = _unrecord(env, "c")
    env.tracker.handle(env.event(join.job_id, "RUNNING"))
    env.tracker.handle(env.event(join.job_id, "SUCCEEDED", container={"exitCode": 0}))
    assert env.store.get_run("r1").status.value == "RUNNING"
    env.store.put_job(join)
    outcome = env.tracker.handle(env.event(join.job_id, "SUCCEEDED", container={"exitCode": 0}))
    assert outcome.run_finished and env.store.get_run("r1").status.value == "SUCCEEDED"


def test_consecutive_child_events_are_written_in_one_store_call(env: Env) -> None:
    a = env.job_id("a")
    calls: list[int] = []
    real = env.store.put_item_results

    def counted(results: Any) -> None:
        calls.append(len(results))
        real(results)

    env.store.put_item_results = counted  # type: ignore[method-assign]
    page = [_child(env, a, i, s) for i in range(3) for s in ("RUNNABLE", "RUNNING")]
    page += [_child(env, a, 0, "SUCCEEDED"), env.event(a, "RUNNING"), _child(env, a, 1, "SUCCEEDED")]
    env.tracker.handle_many(page)
    # The children before the parent's event at once, then the one after it.
    assert calls == [7, 1]
    assert _items(env) == {0: "SUCCEEDED", 1: "SUCCEEDED", 2: "RUNNING"}
    assert env.kinds() == [("Stage", "a", "RUNNING")]


def test_a_page_that_fails_is_handled_again_event_by_event(env: Env) -> None:
    a = env.job_id("a")
    real = env.tracker.handle_many

    def page_fails(events: Any) -> Any:
        if len(events) > 1:
            raise RuntimeError("store locked")
        return real(events)

    env.tracker.handle_many = page_fails  # type: ignore[method-assign]
    track_page(env.tracker, [_child(env, a, 0, "RUNNING"), _child(env, a, 1, "SUCCEEDED")])
    assert _items(env) == {0: "RUNNING", 1: "SUCCEEDED"}
