"""Tracker: stage and run status from parent/plain events alone, duplicates and out-of-order events, deferred joins, waits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.local.runstore import SqliteRunStore
from chalicelib.objectstores import open_store
from chalicelib.pipeline.events import MemoryPublisher
from chalicelib.pipeline.invocation import parse_runner_argv
from chalicelib.pipeline.joins import manifest_join_items
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.runs import RunPorts, start_run
from chalicelib.pipeline.tracker import Tracker
from tests.unit.pipeline.batch_fake import FakeBatch

SPEC = """
name: t
stages:
  - name: a
    image: img
    command: [a, "{item}", "{out}"]
    foreach: item
  - name: c
    image: img
    command: [c, "{a}", "{out}"]
    after: [a]
"""


class Env:
    def __init__(self, tmp_path: Path, spec: str = SPEC, items: int = 3) -> None:
        folder = tmp_path / "items"
        folder.mkdir()
        for i in range(items):
            (folder / f"s{i}.txt").write_text(str(i))
        self.batch = FakeBatch()
        self.store = SqliteRunStore(tmp_path / "runs.db")
        self.publisher = MemoryPublisher()
        ports = RunPorts(batch=self.batch, store=self.store, publisher=self.publisher,
                         queues={"spot": "q", "on-demand": "q", "gpu": "q"}, objects=open_store, clock=lambda: 1000)
        self.prefix = (tmp_path / "runs" / "r1").as_uri()
        start_run(ports, RunRequest(run_id="r1", spec=yaml.safe_load(spec), items_source=str(folder),
                                    prefix=self.prefix, base_dir=str(tmp_path)))
        self.publisher.envelopes.clear()
        self.tracker = Tracker(store=self.store, batch=self.batch, publisher=self.publisher,
                               join_items=manifest_join_items(open_store("file:///")), clock=lambda: 2000)

    def job_id(self, key: str) -> str:
        job = self.store.get_job("r1", key)
        assert job is not None, key
        return job.job_id

    def event(self, job_id: str, status: str, **extra: Any) -> dict[str, Any]:
        detail = {"jobId": job_id, "status": status, "statusReason": extra.pop("reason", ""), **extra}
        return {"version": "0", "detail-type": "Batch Job State Change", "source": "aws.batch", "detail": detail}

    def kinds(self) -> list[tuple[str, str | None, str]]:
        return [(e["detail-type"].split()[1], e["detail"].get("stage"), e["detail"]["status"])
                for e in self.publisher.envelopes]


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_run_succeeds_from_parent_and_plain_events_alone(env: Env) -> None:
    env.tracker.handle(env.event(env.job_id("a"), "SUCCEEDED"))
    assert env.store.get_stage("r1", "a").counts == {"SUCCEEDED": 3}
    outcome = env.tracker.handle(env.event(env.job_id("c"), "SUCCEEDED", container={"exitCode": 0}))
    assert outcome.run_finished
    assert env.kinds() == [("Stage", "a", "SUCCEEDED"), ("Stage", "c", "SUCCEEDED"), ("Run", None, "SUCCEEDED")]
    run = env.store.get_run("r1")
    assert run.status.value == "SUCCEEDED" and run.failures == () and run.ended_at == 2000
    detail = env.publisher.envelopes[-1]["detail"]
    assert detail["counts"] == {"SUCCEEDED": 4} and detail["stages"]["a"]["status"] == "SUCCEEDED"


def test_duplicate_and_out_of_order_events_change_nothing(env: Env) -> None:
    a = env.job_id("a")
    env.tracker.handle(env.event(a, "SUCCEEDED"))
    published = len(env.publisher.envelopes)
    assert env.tracker.handle(env.event(a, "SUCCEEDED")).published == []
    assert env.tracker.handle(env.event(a, "RUNNING")).published == []
    assert env.tracker.handle(env.event(a, "PENDING")).published == []
    assert len(env.publisher.envelopes) == published
    assert env.store.get_job("r1", "a").status == "SUCCEEDED"
    assert env.store.get_stage("r1", "a").status.value == "SUCCEEDED"


def test_failed_array_parent_asks_list_jobs_which_items_failed(env: Env) -> None:
    a = env.job_id("a")
    env.batch.child_status[a] = {1: ("FAILED", "Essential container in task exited")}
    env.tracker.handle(env.event(a, "FAILED", reason="Essential container in task exited"))
    env.tracker.handle(env.event(env.job_id("c"), "FAILED", reason="Dependent Job failed"))
    assert ("list_jobs", {"arrayJobId": a, "jobStatus": "FAILED"}) in env.batch.calls
    results = [(r.index, r.status) for r in env.store.list_item_results("r1", "a")]
    assert results == [(0, "SUCCEEDED"), (1, "FAILED"), (2, "SUCCEEDED")]
    run = env.store.get_run("r1")
    assert run.status.value == "FAILED"
    # Nothing tolerates a's failure: the run ends with it (as the failed wait ends it on AWS),
    # naming the stage first, then the failed item; c, not run yet, is terminated.
    assert [(f["stage"], f["item"], f["dependency"]) for f in run.failures] == [("", None, False), ("a", 1, False)]
    assert run.failures[0]["reason"].startswith("StageFailed: stage a: 1 of 3 items failed (first: item 1:")
    assert ("terminate_job", {"jobId": env.job_id("c"), "reason": run.failures[0]["reason"]}) in env.batch.calls


def test_child_events_give_item_progress_and_mark_the_stage_running(env: Env) -> None:
    a = env.job_id("a")
    env.tracker.handle(env.event(f"{a}:2", "RUNNING", arrayProperties={"index": 2}))
    env.tracker.handle(env.event(f"{a}:0", "SUCCEEDED", arrayProperties={"index": 0}))
    env.tracker.handle(env.event(f"{a}:0", "RUNNING", arrayProperties={"index": 0}))
    stage = env.store.get_stage("r1", "a")
    assert stage.status.value == "RUNNING"
    assert {r.index: r.status for r in env.store.list_item_results("r1", "a")} == {0: "SUCCEEDED", 2: "RUNNING"}
    assert env.kinds() == [("Stage", "a", "RUNNING")]


def test_events_of_unknown_jobs_and_other_sources_are_ignored(env: Env) -> None:
    assert env.tracker.handle(env.event("not-ours", "SUCCEEDED")).published == []
    assert env.tracker.handle({"detail-type": "Object Created", "source": "aws.s3", "detail": {}}).published == []


def test_deferred_join_is_submitted_over_the_succeeded_items(tmp_path: Path) -> None:
    env = Env(tmp_path, SPEC + "    allow_failed_items: true\n")
    assert env.store.get_job("r1", "c") is None
    assert env.store.get_stage("r1", "c").status.value == "WAITING"
    a = env.job_id("a")
    env.batch.child_status[a] = {1: ("FAILED", "Essential container in task exited")}
    outcome = env.tracker.handle(env.event(a, "FAILED"))
    assert outcome.submitted == ["c"]
    request = [kw for name, kw in env.batch.calls if name == "submit_job"][-1]
    assert "dependsOn" not in request  # a Batch dependency on the failed array would fail the join
    args = parse_runner_argv(request["containerOverrides"]["command"][3:])
    assert args.join and args.items == f"{env.prefix}/_joins/c.json"
    listed = json.loads(Path(args.items.removeprefix("file://")).read_text())
    assert [item["key"] for item in listed["items"]] == ["s0", "s2"]
    assert env.store.get_stage("r1", "c").status.value == "SUBMITTED"
    env.tracker.handle(env.event(env.job_id("c"), "SUCCEEDED"))
    assert env.store.get_run("r1").status.value == "FAILED"  # item s1 failed in a
    assert env.store.get_stage("r1", "c").status.value == "SUCCEEDED"


def test_deferred_join_with_no_succeeded_item_is_skipped(tmp_path: Path) -> None:
    env = Env(tmp_path, SPEC + "    allow_failed_items: true\n", items=2)
    a = env.job_id("a")
    env.batch.child_status[a] = {0: ("FAILED", "x"), 1: ("FAILED", "x")}
    outcome = env.tracker.handle(env.event(a, "FAILED"))
    assert outcome.submitted == [] and outcome.run_finished
    stage = env.store.get_stage("r1", "c")
    assert stage.status.value == "FAILED"
    failures = env.store.get_run("r1").failures
    assert any(f["stage"] == "c" and "no item succeeded" in f["reason"] for f in failures)


def test_stage_end_resumes_a_wait_that_began_first_and_records_one_that_did_not(env: Env) -> None:
    assert env.store.put_task_token("r1", "a", "token-a").completed is False
    outcome = env.tracker.handle(env.event(env.job_id("a"), "SUCCEEDED"))
    assert [(r.run_id, r.stage, r.token, r.result) for r in outcome.resumes] == [
        ("r1", "a", "token-a", {"stage": "a", "status": "SUCCEEDED", "counts": {"SUCCEEDED": 3}})]
    env.tracker.handle(env.event(env.job_id("c"), "FAILED", reason="Essential container in task exited"))
    late = env.store.put_task_token("r1", "c", "token-c")
    assert late.completed and late.result["status"] == "FAILED"


def test_reconcile_feeds_describe_jobs_state_through_the_tracker(env: Env) -> None:
    for key in ("a", "c"):
        env.batch.jobs[env.job_id(key)]["status"] = "SUCCEEDED"
    outcome = env.tracker.reconcile("r1")
    assert outcome.run_finished
    assert env.store.get_run("r1").status.value == "SUCCEEDED"


def test_a_handler_that_dies_mid_event_is_completed_by_the_redelivered_event(env: Env) -> None:
    class Died(Exception):
        pass

    real_advance = env.store.advance_job
    calls = {"n": 0}

    def advance_once_dies(job_id: str, status: str, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Died()
        return real_advance(job_id, status, **kwargs)

    a = env.job_id("a")
    env.batch.child_status[a] = {2: ("FAILED", "Essential container in task exited")}
    env.store.advance_job = advance_once_dies  # type: ignore[method-assign]
    with pytest.raises(Died):
        env.tracker.handle(env.event(a, "FAILED"))
    env.tracker.handle(env.event(a, "FAILED"))  # EventBridge/Lambda redelivery
    stage = env.store.get_stage("r1", "a")
    assert stage.status.value == "FAILED" and stage.counts == {"SUCCEEDED": 2, "FAILED": 1}


def test_a_redelivered_end_settles_a_stage_left_unsettled(env: Env) -> None:
    a = env.job_id("a")
    env.store.put_item_results(env.tracker._job_results(env.store.get_job("r1", "a"), {"status": "SUCCEEDED"}))
    env.store.advance_job(a, "SUCCEEDED")  # recorded, but the process died before settling
    assert env.store.get_stage("r1", "a").status.value == "SUBMITTED"
    env.tracker.handle(env.event(a, "SUCCEEDED"))
    assert env.store.get_stage("r1", "a").status.value == "SUCCEEDED"


def test_a_deferred_join_claimed_by_another_tracker_is_not_submitted_twice(tmp_path: Path) -> None:
    # ListJobs cannot see a join another tracker has just submitted (eventually consistent):
    # the run store's conditional claim is the lock, and a dead holder's claim expires.
    env = Env(tmp_path, SPEC + "    allow_failed_items: true\n")
    assert env.store.claim_submission("r1", "c", now_ms=1990, lease_ms=60_000)  # another tracker holds it
    a = env.job_id("a")
    env.batch.child_status[a] = {1: ("FAILED", "Essential container in task exited")}
    assert env.tracker.handle(env.event(a, "FAILED")).submitted == []
    assert env.store.get_job("r1", "c") is None and env.batch.count("submit_job") == 1  # a's own submit
    later = Tracker(store=env.store, batch=env.batch, publisher=env.publisher,
                    join_items=manifest_join_items(open_store("file:///")), clock=lambda: 1990 + 60_000)
    assert later.reconcile("r1").submitted == ["c"]  # the holder never recorded it: its lease ended
    assert later.reconcile("r1").submitted == [] and env.batch.count("submit_job") == 2
