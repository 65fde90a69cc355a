"""The run-end decisions of the core (run_end.py): tolerated failures, wait verdicts, deadlines, ending and cancelling a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.pipeline import run_end
from chalicelib.pipeline.events import RUN_DETAIL_TYPE
from chalicelib.pipeline.records import ItemResult, RunStatus, StageRecord, StageStatus
from chalicelib.pipeline.run_end import EndPorts, cancel_run, end_run, finish_run, is_tolerated, wait_verdict
from chalicelib.pipeline.runcontext import from_record
from chalicelib.pipeline.spec import build_spec
from tests.unit.pipeline.test_tracker import Env


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)

CHAIN = {
    "name": "chain",
    "stages": [
        {"name": "a", "image": "i", "command": ["a"], "foreach": "item"},
        {"name": "b", "image": "i", "command": ["b"], "foreach": "item", "after": ["a"]},
        {"name": "c", "image": "i", "command": ["c"], "after": ["b"], "allow_failed_items": True},
        {"name": "d", "image": "i", "command": ["d"], "after": ["c"]},
    ],
}


def test_a_failure_is_tolerated_through_foreach_stages_up_to_one_that_allows_failed_items() -> None:
    spec = build_spec(CHAIN, Path("."))
    assert is_tolerated(spec, "b")  # c directly downstream runs on what succeeded
    assert is_tolerated(spec, "a")  # a's failed items fail b's too, and c still takes the rest
    assert not is_tolerated(spec, "c") and not is_tolerated(spec, "d")  # d is the end; c has a strict join


def _ports(env: Env, clock: int = 5000) -> EndPorts:
    return EndPorts(store=env.store, batch=env.batch, publisher=env.publisher, clock=lambda: clock)


def test_end_run_terminates_marks_and_publishes_once(env: Env) -> None:
    first = end_run(_ports(env), "r1", reason="StageFailed: stage a: boom")
    again = end_run(_ports(env), "r1", reason="a second caller")
    assert first.ended and not again.ended
    assert sorted(first.terminated) == sorted([env.job_id("a"), env.job_id("c")])
    run = env.store.get_run("r1")
    assert run.status is RunStatus.FAILED and run.ended_at == 5000
    assert run.failures[0]["reason"] == "StageFailed: stage a: boom"
    assert len(env.publisher.of_type(RUN_DETAIL_TYPE)) == 1  # one run-ended event, from end_run only


def test_cancel_run_is_end_run_with_a_cancel_reason(env: Env) -> None:
    end = cancel_run(_ports(env), "r1", "by user (Ctrl-C)")
    assert end.ended and end.status is RunStatus.FAILED
    assert env.store.get_run("r1").failures[0]["reason"] == "cancelled: by user (Ctrl-C)"
    assert ("terminate_job", {"jobId": env.job_id("a"), "reason": "cancelled: by user (Ctrl-C)"}) in env.batch.calls
    assert cancel_run(_ports(env), "missing").status is None


def test_finish_run_succeeds_a_running_run_and_raises_for_a_failed_one(env: Env) -> None:
    assert finish_run(_ports(env), "r1").status is RunStatus.SUCCEEDED
    env2_failures = [{"stage": "a", "item": i, "reason": f"r{i}"} for i in range(60)]
    env.store.update_run("r1", status=RunStatus.FAILED, failures=env2_failures[:50], failure_count=60)
    with pytest.raises(run_end.RunFailedError, match="and 10 more failures"):
        finish_run(_ports(env), "r1")


def test_a_failed_stage_fails_its_wait_unless_tolerated(env: Env) -> None:
    env.store.put_item_results([ItemResult("r1", "a", 1, "FAILED", "j:1", "Essential container in task exited", 3)])
    spec = from_record(env.store.get_run("r1")).spec
    result = {"stage": "a", "status": "FAILED", "counts": {"SUCCEEDED": 2, "FAILED": 1}}
    verdict = wait_verdict(spec, env.store, "r1", result)
    assert verdict.failed
    assert verdict.cause == "stage a: 1 of 3 items failed (first: item 1: Essential container in task exited)"
    assert not wait_verdict(spec, env.store, "r1", {"stage": "a", "status": "SUCCEEDED"}).failed


def test_stage_after_wait_decides_a_reconcile(env: Env) -> None:
    spec = from_record(env.store.get_run("r1")).spec
    with pytest.raises(run_end.StageTimedOutError, match="stage a: still SUBMITTED"):
        run_end.stage_after_wait(spec, env.store, "r1", "a")
    assert run_end.stage_after_wait(spec, env.store, "r1", "a", final=False) == {"stage": "a", "status": "SUBMITTED"}
    env.store.put_stage(StageRecord(run_id="r1", stage="a", status=StageStatus.FAILED, items=3,
                                    counts={"FAILED": 3}))
    with pytest.raises(run_end.StageFailedError, match="stage a: 3 of 3 items failed"):
        run_end.stage_after_wait(spec, env.store, "r1", "a", final=False)


def test_overdue_stages_follow_the_injected_clock(env: Env) -> None:
    ctx = from_record(env.store.get_run("r1"))
    limit_ms = run_end.wait_timeout(ctx.spec, "a") * 1000
    created = ctx.run.created_at
    assert run_end.overdue_stages(ctx, env.store, created + limit_ms) == []
    assert run_end.overdue_stages(ctx, env.store, created + limit_ms + 1) == ["a", "c"]


def test_a_local_tracker_ends_a_run_whose_stage_waited_past_its_timeout(tmp_path: Path) -> None:
    env = Env(tmp_path)
    from chalicelib.objectstores import open_store
    from chalicelib.pipeline.joins import manifest_join_items
    from chalicelib.pipeline.tracker import Tracker

    late = env.store.get_run("r1").created_at + run_end.DEFAULT_WAIT_S * 1000 + 1
    tracker = Tracker(store=env.store, batch=env.batch, publisher=env.publisher,
                      join_items=manifest_join_items(open_store("file:///")), clock=lambda: late,
                      enforce_deadlines=True)
    env.batch.jobs[env.job_id("a")]["status"] = "RUNNING"
    tracker.reconcile("r1")
    run = env.store.get_run("r1")
    assert run.status is RunStatus.FAILED
    assert run.failures[0]["reason"] == "StageTimedOutError: stage a: still running when its wait timed out"


def test_a_run_recorded_before_plans_carried_stage_shapes_still_reads_them(env: Env) -> None:
    from dataclasses import replace

    run = env.store.get_run("r1")
    old_plan = {k: v for k, v in run.spec["plan"].items() if k != "stages"}
    old = replace(run, spec={**run.spec, "plan": old_plan})
    assert from_record(old).plan.stages == from_record(run).plan.stages
    assert from_record(old).stage_items("a") == 3 and from_record(old).stage_items("c") == 1
