"""The pipeline state machine on moto's Step Functions engine: success, a failed stage, an early stage end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.integration.handlers.sfn_harness import (
    MOTO_CONFIG,
    Harness,
    build,
    put_manifest,
)

STAGES = ("qc", "align", "joint")


@pytest.fixture()
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws(config=MOTO_CONFIG):
        yield build(monkeypatch)


def _succeed_all(h: Harness, run_id: str, items: int) -> None:
    for stage in STAGES:
        h.wait_for(lambda stage=stage: h.token_stored(run_id, stage), f"{stage}'s wait to store its token")
        h.end_stage(run_id, stage, "SUCCEEDED", {"SUCCEEDED": items})


def test_a_run_succeeds_and_reports_on_the_custom_bus(harness: Harness) -> None:
    arn = harness.start("run-ok", put_manifest(harness.rt, "ok", 10))
    _succeed_all(harness, "run-ok", 10)
    execution = harness.finished(arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert harness.rt.store.get_run("run-ok").status.value == "SUCCEEDED"
    assert sorted(harness.calls) == sorted(["plan", "submit", "wait", "wait", "wait", "finalize"])
    events = harness.bus_events(1)
    assert [(e["detail-type"], e["detail"]["status"]) for e in events] == [("Pipeline Run State Change", "SUCCEEDED")]


def test_a_failed_stage_goes_through_cleanup_to_a_fail_naming_stage_and_reason(harness: Harness) -> None:
    # joint is the last stage: nothing tolerates its failure. (A failure in qc or align is
    # tolerated: their failed items flow on to joint, which runs on the samples that succeeded.)
    arn = harness.start("run-bad", put_manifest(harness.rt, "bad", 10))
    harness.wait_for(lambda: harness.token_stored("run-bad", "joint"), "joint's wait")
    harness.end_stage("run-bad", "joint", "FAILED", {"FAILED": 1})
    execution = harness.finished(arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "StageFailed"
    assert execution["cause"].startswith("stage joint: 1 of 1 items failed")
    assert "cleanup" in harness.calls and "finalize" not in harness.calls
    assert harness.rt.store.get_run("run-bad").status.value == "FAILED"
    events = harness.bus_events(1)
    assert events[0]["detail"]["status"] == "FAILED"


def test_a_stage_that_ended_before_its_wait_began_is_not_lost(harness: Harness) -> None:
    # qc's result is in the table before the execution exists: its wait must resume at once.
    harness.end_stage("run-early", "qc", "SUCCEEDED", {"SUCCEEDED": 10})
    arn = harness.start("run-early", put_manifest(harness.rt, "early", 10))
    for stage in STAGES[1:]:
        harness.wait_for(lambda stage=stage: harness.token_stored("run-early", stage), f"{stage}'s wait")
        harness.end_stage("run-early", stage, "SUCCEEDED", {"SUCCEEDED": 10})
    assert harness.finished(arn)["status"] == "SUCCEEDED"


def test_state_transitions_do_not_grow_with_items(harness: Harness) -> None:
    counts = {}
    for items in (10, 10_000):
        run_id = f"run-{items}"
        arn = harness.start(run_id, put_manifest(harness.rt, run_id, items))
        _succeed_all(harness, run_id, items)
        assert harness.finished(arn)["status"] == "SUCCEEDED"
        counts[items] = harness.transitions(arn)
    assert counts[10] == counts[10_000]
    assert counts[10] <= 10 + 4 * len(STAGES)


def test_the_tracker_lambda_resumes_the_waits_from_batch_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Submit (into a recording Batch), real tracker fed Batch events; deferred join submitted by it."""
    from chalicelib.aws.composition import use_runtime
    from chalicelib.handlers import events as event_handlers
    from chalicelib.handlers import state_machine_tasks
    from tests.integration.handlers.fake_batch import FakeBatch

    with mock_aws(config=MOTO_CONFIG):
        harness = build(monkeypatch, tasks=state_machine_tasks.TASKS)
        batch = FakeBatch()
        harness.rt.batch = batch
        use_runtime(harness.rt)
        try:
            arn = harness.start("run-live", put_manifest(harness.rt, "live", 4))
            done: set[str] = set()

            def end_recorded_jobs() -> bool:
                """Every submitted job Batch would report (recorded by the submitter) succeeds."""
                for job_id, job in list(batch.jobs.items()):
                    if job_id in done or harness.rt.store.find_job(job_id) is None:
                        continue
                    detail = {"jobId": job_id, "jobName": job["jobName"], "status": "SUCCEEDED",
                              "container": {"exitCode": 0}}
                    if "arrayProperties" in job:
                        detail["arrayProperties"] = {"size": job["arrayProperties"]["size"]}
                    event_handlers.tracker({
                        "version": "0", "id": job_id, "detail-type": "Batch Job State Change",
                        "source": "aws.batch", "account": "123456789012", "time": "2026-11-25T10:00:00Z",
                        "region": "us-east-1", "resources": [], "detail": detail,
                    }, None)
                    done.add(job_id)
                return harness.rt.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING"

            harness.wait_for(end_recorded_jobs, "the run to end as its jobs succeed")
            execution = harness.finished(arn)
        finally:
            use_runtime(None)
    assert execution["status"] == "SUCCEEDED", execution
    names = sorted(job["jobName"] for job in batch.jobs.values())
    assert any("joint" in n for n in names) and any("qc" in n for n in names) and any("align" in n for n in names)


def test_a_wait_that_times_out_reconciles_with_describe_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Batch event arrives: each wait times out, and one DescribeJobs round settles the stage."""
    from chalicelib.handlers import state_machine_tasks
    from tests.integration.handlers.fake_batch import FakeBatch

    def short_waits(rt, event):  # the real plan, with waits of seconds instead of days
        planned = state_machine_tasks.plan(rt, event)
        for stage in planned["stages"]:
            stage["timeoutSeconds"] = 5 if stage["name"] == "joint" else 1
        return planned

    with mock_aws(config=MOTO_CONFIG):
        harness = build(monkeypatch, tasks={**state_machine_tasks.TASKS, "plan": short_waits})
        batch = FakeBatch(report_as="SUCCEEDED")  # the jobs finished, but their events were lost
        harness.rt.batch = batch
        arn = harness.start("run-quiet", put_manifest(harness.rt, "quiet", 4))
        execution = harness.finished(arn)
    assert execution["status"] == "SUCCEEDED", execution
    # qc's and align's waits time out; joint's either times out too or is resumed by a reconcile
    # that found its record holding both token and result (a reconcile resumes every such wait).
    assert 2 <= harness.calls.count("reconcile") <= 3 and batch.describe_calls >= 1
    assert {j["jobName"].rsplit("-", 1)[-1] for j in batch.jobs.values()} == {"qc", "align", "joint"}
