"""The run-end decisions the cloud makes, on the real engine: a stage failure nothing tolerates ends the run and terminates the rest; a cancel ends it the same way; one run-ended event reaches the event log."""

from __future__ import annotations

import json
import time
from pathlib import Path

from chalicelib.local.runtime import EVENTS_LOG
from chalicelib.pipeline.events import RUN_DETAIL_TYPE
from chalicelib.pipeline.records import RunStatus
from chalicelib.pipeline.run_end import cancel_run
from tests.e2e.pipeline_harness import STAGE, describe, local_runtime, make_items, request_for, run_to_end

FAIL_FAST = ("""name: failfast
stages:
  - name: bad
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --fail-key, s1, --out, "{out}", "{item}"]
    foreach: item
  - name: slow
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --slow-key, s0, --sleep, "300", --out, "{out}", "{item}"]
    foreach: item
""")

CANCELLABLE = ("""name: cancellable
stages:
  - name: slow
""" + STAGE + """    command: [python, -m, tool, copy, --key, "{key}", --slow-key, s0, --sleep, "300", --out, "{out}", "{item}"]
    foreach: item
  - name: gather
""" + STAGE + """    command: [python, -m, tool, gather, --out, "{out}", "{slow}"]
    after: [slow]
    allow_failed_items: true
""")


def _run_events(data_dir: Path, run_id: str) -> list[dict]:
    lines = (data_dir / EVENTS_LOG).read_text().splitlines()
    envelopes = [json.loads(line) for line in lines]
    return [e for e in envelopes if e["detail-type"] == RUN_DETAIL_TYPE and e["detail"]["runId"] == run_id]


def test_a_stage_failure_nothing_tolerates_ends_the_run_and_terminates_the_other_branch(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        run = run_to_end(runtime, request_for(runtime, FAIL_FAST, items, "ff1", tmp_path))
        assert run.status is RunStatus.FAILED
        cause = run.failures[0]["reason"]
        assert cause.startswith("StageFailed: stage bad: 1 of 2 items failed (first: item 1:"), cause
        slow = runtime.store.get_job("ff1", "slow")
        # The independent branch (one item sleeps 300 s) did not run to its end: it was terminated,
        # wherever it stood (on a busy machine its array may not have reached RUNNABLE yet).
        assert describe(runtime, [slow.job_id])[slow.job_id]["status"] != "SUCCEEDED"
        deadline = time.monotonic() + 90
        while describe(runtime, [slow.job_id])[slow.job_id]["status"] != "FAILED":
            assert time.monotonic() < deadline, "the terminated array never ended"
            time.sleep(0.1)
        sleeper = f"{slow.job_id}:0"  # the child that would have slept 300 s
        assert "StageFailed: stage bad" in describe(runtime, [sleeper])[sleeper]["statusReason"]
        ended = [e for e in _run_events(runtime.data_dir, "ff1") if e["detail"]["status"] == "FAILED"]
        assert len(ended) == 1 and ended[0]["detail"]["failures"][0]["reason"] == cause


def test_a_cancel_terminates_the_run_submits_nothing_more_and_logs_one_run_end(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt"])
    with local_runtime(tmp_path / "data") as (_, runtime):
        runtime.starter.start_run(request_for(runtime, CANCELLABLE, items, "c1", tmp_path))
        deadline = time.monotonic() + 90  # a generous bound on a busy machine, not a timing check
        # Asked of the engine: a child's RUNNING event can precede the job's record, and is then
        # not seen by the tracker (the stage shows RUNNING only from later child events).
        while (job := runtime.store.get_job("c1", "slow")) is None or \
                describe(runtime, [f"{job.job_id}:0"]).get(f"{job.job_id}:0", {}).get("status") != "RUNNING":
            assert time.monotonic() < deadline, "slow never started"
            time.sleep(0.05)
        end = cancel_run(runtime.ports, "c1", "by the test")
        assert end.ended and end.terminated == [runtime.store.get_job("c1", "slow").job_id]
        assert cancel_run(runtime.ports, "c1", "twice").ended is False
        run = runtime.store.get_run("c1")
        assert run.status is RunStatus.FAILED and run.failures[0]["reason"] == "cancelled: by the test"
        slow = runtime.store.get_job("c1", "slow")
        while runtime.store.get_job("c1", "slow").status != "FAILED":
            assert time.monotonic() < deadline + 90, "the cancelled array never ended"
            runtime.tracker.reconcile("c1")
            time.sleep(0.1)
        # The tolerant join would run on what succeeded; after a cancel nothing more is submitted.
        assert runtime.store.get_job("c1", "gather") is None
        sleeper = f"{slow.job_id}:0"
        assert describe(runtime, [sleeper])[sleeper]["statusReason"].startswith("cancelled: by the test")
        statuses = [e["detail"]["status"] for e in _run_events(runtime.data_dir, "c1")]
        assert statuses == ["RUNNING", "FAILED"]
