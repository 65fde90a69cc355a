"""SQLite run store: idempotent run creation, job map, no-regress statuses, wait handshake."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chalicelib.local.runstore import SqliteRunStore
from chalicelib.pipeline.records import (
    ItemResult,
    JobRecord,
    RunRecord,
    RunStatus,
    StageRecord,
    StageStatus,
)


@pytest.fixture()
def store(tmp_path: Path) -> SqliteRunStore:
    return SqliteRunStore(tmp_path / "runs.db")


def _run(run_id: str = "r1", created: int = 1000) -> RunRecord:
    return RunRecord(
        run_id=run_id, pipeline="p", status=RunStatus.SUBMITTING, created_at=created,
        prefix="file:///tmp/runs/r1/", items=3, spec={"name": "p"}, source="cli",
    )


def _job(key: str = "a", job_id: str = "j-a") -> JobRecord:
    return JobRecord(run_id="r1", key=key, stage="a", job_id=job_id, job_name=f"r1-{key}", size=3, is_array=True)


def test_create_run_is_idempotent_and_round_trips(store: SqliteRunStore) -> None:
    assert store.create_run(_run()) is True
    assert store.create_run(_run()) is False
    run = store.get_run("r1")
    assert run == _run()
    assert store.get_run("missing") is None


def test_list_runs_newest_first(store: SqliteRunStore) -> None:
    store.create_run(_run("old", 1))
    store.create_run(_run("new", 2))
    assert [r.run_id for r in store.list_runs()] == ["new", "old"]
    assert [r.run_id for r in store.list_runs(limit=1)] == ["new"]


def test_finished_run_never_regresses(store: SqliteRunStore) -> None:
    store.create_run(_run())
    store.update_run("r1", status=RunStatus.FAILED, ended_at=5, failures=[{"stage": "a", "item": 1}])
    store.update_run("r1", status=RunStatus.RUNNING)
    run = store.get_run("r1")
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert run.ended_at == 5
    assert run.failures == ({"stage": "a", "item": 1},)


def test_jobs_are_found_by_key_and_by_batch_id(store: SqliteRunStore) -> None:
    store.put_job(_job("a", "j-a"))
    store.put_job(_job("b", "j-b"))
    assert store.get_job("r1", "a") == _job("a", "j-a")
    found = store.find_job("j-b")
    assert found is not None and found.key == "b"
    assert store.find_job("nope") is None
    assert [j.key for j in store.list_jobs("r1")] == ["a", "b"]


def test_advance_job_ignores_duplicates_regressions_and_unknown_ids(store: SqliteRunStore) -> None:
    store.put_job(_job())
    assert store.advance_job("j-a", "RUNNING", started_at=10) is True
    assert store.advance_job("j-a", "RUNNING") is False
    assert store.advance_job("j-a", "SUCCEEDED", stopped_at=20) is True
    assert store.advance_job("j-a", "RUNNING") is False
    assert store.advance_job("j-a", "FAILED") is False
    assert store.advance_job("unknown", "RUNNING") is False
    job = store.get_job("r1", "a")
    assert job is not None
    assert (job.status, job.started_at, job.stopped_at) == ("SUCCEEDED", 10, 20)


def test_stages_round_trip_and_replace(store: SqliteRunStore) -> None:
    stage = StageRecord(run_id="r1", stage="a", status=StageStatus.SUBMITTED, items=3)
    store.put_stage(stage)
    done = StageRecord(
        run_id="r1", stage="a", status=StageStatus.FAILED, items=3,
        counts={"SUCCEEDED": 2, "FAILED": 1}, started_at=1, ended_at=2,
    )
    store.put_stage(done)
    assert store.get_stage("r1", "a") == done
    assert store.list_stages("r1") == [done]


def test_item_results_keep_first_terminal_state(store: SqliteRunStore) -> None:
    store.put_item_results([ItemResult("r1", "a", 0, "RUNNING", "j:0")])
    store.put_item_results([ItemResult("r1", "a", 0, "FAILED", "j:0", "Essential container in task exited", 3)])
    store.put_item_results([ItemResult("r1", "a", 0, "RUNNING", "j:0"), ItemResult("r1", "a", 1, "SUCCEEDED", "j:1")])
    results = store.list_item_results("r1", "a")
    assert [(r.index, r.status, r.exit_code) for r in results] == [(0, "FAILED", 3), (1, "SUCCEEDED", None)]
    assert store.list_item_results("r1", "other") == []


def test_wait_completes_whichever_half_arrives_second(store: SqliteRunStore) -> None:
    first = store.put_task_token("r1", "a", "token-1")
    assert first.completed is False
    second = store.put_stage_result("r1", "a", {"status": "SUCCEEDED"})
    assert second.completed is True
    assert (second.token, second.result) == ("token-1", {"status": "SUCCEEDED"})
    # Result before token: the stage ended before its wait began, and is not lost.
    assert store.put_stage_result("r1", "b", {"status": "FAILED"}).completed is False
    late = store.put_task_token("r1", "b", "token-2")
    assert late.completed is True and late.result == {"status": "FAILED"}


def test_concurrent_advances_from_threads_apply_once(store: SqliteRunStore) -> None:
    store.put_job(_job())
    wins: list[bool] = []

    def advance() -> None:
        wins.append(store.advance_job("j-a", "SUCCEEDED"))
        store.close()

    threads = [threading.Thread(target=advance) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


def test_stages_keep_their_planned_order_when_updated(store: SqliteRunStore) -> None:
    for name in ("a", "b", "c"):
        store.put_stage(StageRecord(run_id="r1", stage=name, status=StageStatus.SUBMITTED, items=1))
    store.put_stage(StageRecord(run_id="r1", stage="a", status=StageStatus.SUCCEEDED, items=1))
    assert [s.stage for s in store.list_stages("r1")] == ["a", "b", "c"]
    assert store.get_stage("r1", "a").status is StageStatus.SUCCEEDED


def test_a_move_without_a_reason_keeps_the_earlier_reason(store: SqliteRunStore) -> None:
    # The one rule (records.advanced_job), applied by both stores.
    store.put_job(_job())
    assert store.advance_job("j-a", "RUNNABLE", reason="waiting for capacity") is True
    assert store.advance_job("j-a", "RUNNING", started_at=10) is True
    assert store.get_job("r1", "a").status_reason == "waiting for capacity"
    assert store.advance_job("j-a", "RUNNABLE", reason="late and backwards") is False
    assert store.get_job("r1", "a").status_reason == "waiting for capacity"
    assert store.advance_job("j-a", "FAILED", reason="Essential container in task exited") is True
    job = store.get_job("r1", "a")
    assert (job.status, job.status_reason, job.started_at) == ("FAILED", "Essential container in task exited", 10)


def test_run_failure_count_round_trips_and_an_update_without_failures_keeps_them(store: SqliteRunStore) -> None:
    store.create_run(_run())
    store.update_run("r1", status=RunStatus.FAILED, ended_at=5, failures=[{"stage": "a", "item": 0}],
                     failure_count=10_000)
    store.update_run("r1", status=RunStatus.FAILED)
    run = store.get_run("r1")
    assert (run.failures, run.failure_count, run.ended_at) == (({"stage": "a", "item": 0},), 10_000, 5)


def test_a_submission_claim_has_one_holder_until_its_lease_ends(store: SqliteRunStore) -> None:
    assert store.claim_submission("r1", "join", now_ms=1000, lease_ms=500) is True
    assert store.claim_submission("r1", "join", now_ms=1200, lease_ms=500) is False
    assert store.claim_submission("r1", "other", now_ms=1200, lease_ms=500) is True
    assert store.claim_submission("r1", "join", now_ms=1500, lease_ms=500) is True  # the holder died


def test_concurrent_claims_from_threads_have_one_winner(store: SqliteRunStore) -> None:
    wins: list[bool] = []

    def claim() -> None:
        wins.append(store.claim_submission("r1", "join", now_ms=1000, lease_ms=60_000))
        store.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
