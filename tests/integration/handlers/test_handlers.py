"""The real handlers through Chalice's test client under moto, fed canned S3, Batch and Step Functions events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

import app as chalice_app
from chalicelib.aws.composition import use_runtime
from chalicelib.handlers import state_machine_tasks
from tests.integration.handlers.fake_batch import FakeBatch
from tests.integration.handlers.sfn_harness import BUCKET, Harness, build, put_manifest

EVENTS = Path(__file__).parents[2] / "fixtures" / "events"


def _event(name: str, **replace: str) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return json.loads(text)


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Harness, FakeBatch, Client]]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        harness = build(monkeypatch)
        batch = FakeBatch()
        harness.rt.batch = batch
        use_runtime(harness.rt)
        try:
            with Client(chalice_app.app) as client:
                yield harness, batch, client
        finally:
            use_runtime(None)


def _planned_and_submitted(h: Harness, run_id: str, items: int = 3) -> None:
    manifest = put_manifest(h.rt, run_id, items)
    state_machine_tasks.plan(h.rt, {"input": {"runId": run_id, "items": manifest}, "execution": run_id})
    state_machine_tasks.submit(h.rt, {"runId": run_id})


def test_duplicate_s3_delivery_starts_one_execution(env) -> None:
    harness, _, client = env
    event = _event("s3_object_created")
    first = client.lambda_.invoke("trigger", event).payload
    second = client.lambda_.invoke("trigger", event).payload
    assert first["runs"] == second["runs"] and len(first["runs"]) == 1
    executions = harness.rt.sfn.list_executions(stateMachineArn=harness.machine_arn)["executions"]
    assert [e["name"] for e in executions] == first["runs"]
    started = json.loads(harness.rt.sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"])
    # The key arrives form-encoded: batch%2B42 is the folder "batch+42".
    assert started["items"] == f"s3://{BUCKET}/inbox/batch+42/manifest.json"
    assert started["prefix"] == f"s3://{BUCKET}/runs/{first['runs'][0]}"


def test_stopped_execution_terminates_outstanding_jobs(env) -> None:
    harness, batch, client = env
    _planned_and_submitted(harness, "run-stop")
    submitted = {j.job_id for j in harness.rt.store.list_jobs("run-stop")}
    assert submitted and len(batch.jobs) == len(submitted)
    answer = client.lambda_.invoke("execution_ended", _event("sfn_execution_aborted")).payload
    assert set(answer["terminated"]) == submitted
    assert {job_id for job_id, _ in batch.terminated} == submitted
    assert all("ABORTED" in reason for _, reason in batch.terminated)
    run = harness.rt.store.get_run("run-stop")
    assert run.status.value == "FAILED"
    # A repeated delivery of the same event records no second failure.
    client.lambda_.invoke("execution_ended", _event("sfn_execution_aborted"))
    assert harness.rt.store.get_run("run-stop").failures == run.failures
    assert any(e["detail"]["status"] == "FAILED" for e in harness.bus_events(1))


def test_batch_event_advances_the_run_and_publishes_stage_events(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-track", items=1)
    job = next(j for j in harness.rt.store.list_jobs("run-track") if j.stage == "qc")
    event = _event("batch_job_succeeded", JOB_ID=job.job_id, JOB_NAME=job.job_name)
    answer = client.lambda_.invoke("tracker", event).payload
    assert answer["published"] >= 1
    assert harness.rt.store.get_stage("run-track", "qc").status.value == "SUCCEEDED"
    # A duplicate delivery changes nothing.
    again = client.lambda_.invoke("tracker", event).payload
    assert again == {"published": 0, "submitted": [], "resumed": 0}
    stage_events = [e for e in harness.bus_events(1) if e["detail-type"] == "Pipeline Stage State Change"]
    assert stage_events and stage_events[0]["detail"]["runId"] == "run-track"


@pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
def test_api_lists_and_describes_runs(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-api")
    listed = client.http.get("/runs").json_body
    assert [r["runId"] for r in listed["runs"]] == ["run-api"]
    described = client.http.get("/runs/run-api").json_body
    assert described["runId"] == "run-api" and described["status"] == "RUNNING"
    assert client.http.get("/runs/nope").status_code == 404
    bad = client.http.post("/runs", headers={"content-type": "application/json"}, body=json.dumps({"items": "ftp://x"}))
    assert bad.status_code == 400 and "$.items" in bad.json_body["Message"]


def test_a_blocked_queue_fails_the_stage_wait_with_batch_reason(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-blocked")
    job = next(j for j in harness.rt.store.list_jobs("run-blocked") if j.stage == "qc")
    harness.rt.store.put_task_token("run-blocked", "qc", "token-qc")
    event = {
        "version": "0", "id": "1", "detail-type": "Batch Job Queue Blocked", "source": "aws.batch",
        "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:batch:us-east-1:123456789012:job/{job.job_id}",
                      "arn:aws:batch:us-east-1:123456789012:job-queue/spot"],
        "detail": {"jobName": job.job_name, "jobId": job.job_id,
                   "statusReason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - job needs more memory than any CE"},
    }
    answer = client.lambda_.invoke("tracker", event).payload
    assert answer == {"failed": [job.job_id]}
    outcome = harness.rt.store.put_task_token("run-blocked", "qc", "token-again")
    assert outcome.completed and outcome.result["status"] == "FAILED"
    assert "JOB_RESOURCE_REQUIREMENT" in outcome.result["reason"]


def test_the_schedule_starts_a_run_over_the_spec_items(env) -> None:
    harness, _, client = env
    answer = client.lambda_.invoke("trigger", {"source": "schedule", "schedule": "rate(1 day)"}).payload
    executions = harness.rt.sfn.list_executions(stateMachineArn=harness.machine_arn)["executions"]
    assert [e["name"] for e in executions] == answer["runs"]
    started = json.loads(harness.rt.sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"])
    assert "items" not in started and started["source"] == "schedule"


def test_tasks_lambda_dispatches_on_action(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-tasks")
    answer = client.lambda_.invoke("tasks", {"action": "wait", "runId": "run-tasks", "stage": "qc",
                                             "taskToken": "token-1"}).payload
    assert answer == {"runId": "run-tasks", "stage": "qc", "resumed": False}
    with pytest.raises(ValueError, match="action: expected one of"):
        client.lambda_.invoke("tasks", {"action": "bogus"})


class TokenSink:
    """Step Functions' task-token calls, recorded; the first call can fail as a Lambda dying before it would."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self._fail = fail_first

    def _record(self, kind: str, token: str, payload: Any) -> None:
        if self._fail:
            self._fail = False
            raise RuntimeError("the Lambda died after the tracker wrote its half, before SendTaskSuccess")
        self.sent.append((kind, token, payload))

    def send_task_success(self, *, taskToken: str, output: str) -> dict[str, Any]:
        self._record("success", taskToken, json.loads(output))
        return {}

    def send_task_failure(self, *, taskToken: str, error: str, cause: str) -> dict[str, Any]:
        self._record("failure", taskToken, (error, cause))
        return {}


def test_a_redelivered_event_resumes_the_wait_the_first_delivery_recorded_but_never_resumed(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-redeliver", items=1)
    sink = TokenSink(fail_first=True)
    harness.rt.sfn = sink
    assert harness.rt.store.put_task_token("run-redeliver", "qc", "token-qc").completed is False
    job = next(j for j in harness.rt.store.list_jobs("run-redeliver") if j.stage == "qc")
    event = _event("batch_job_succeeded", JOB_ID=job.job_id, JOB_NAME=job.job_name)
    with pytest.raises(RuntimeError, match="before SendTaskSuccess"):
        client.lambda_.invoke("tracker", event)  # EventBridge retries: the same event again
    assert harness.rt.store.get_stage("run-redeliver", "qc").status.value == "SUCCEEDED"
    assert sink.sent == []  # the wait's record holds token and result, but nobody resumed it
    answer = client.lambda_.invoke("tracker", event).payload
    assert answer["resumed"] == 1
    assert sink.sent == [("success", "token-qc", {"stage": "qc", "status": "SUCCEEDED", "counts": {"SUCCEEDED": 1}})]


def test_a_periodic_reconcile_of_a_wait_returns_a_running_stage_and_resumes_an_ended_one(env) -> None:
    harness, batch, client = env
    _planned_and_submitted(harness, "run-poll", items=2)
    sink = TokenSink()
    harness.rt.sfn = sink
    check = {"action": "reconcile", "runId": "run-poll", "stage": "qc", "final": False}
    assert client.lambda_.invoke("tasks", check).payload == {"stage": "qc", "status": "SUBMITTED"}
    with pytest.raises(Exception, match="still SUBMITTED when its wait timed out"):
        client.lambda_.invoke("tasks", {**check, "final": True})
    # The events were lost, the jobs finished: the periodic reconcile finds it and resumes the wait.
    harness.rt.store.put_task_token("run-poll", "qc", "token-qc")
    qc = next(j for j in harness.rt.store.list_jobs("run-poll") if j.stage == "qc")
    batch.jobs[qc.job_id]["status"] = "SUCCEEDED"
    assert client.lambda_.invoke("tasks", check).payload == {"stage": "qc", "status": "SUCCEEDED"}
    assert [(kind, token) for kind, token, _ in sink.sent] == [("success", "token-qc")]


def test_a_blocked_queue_waiting_for_capacity_does_not_fail_the_stage(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-capacity")
    job = next(j for j in harness.rt.store.list_jobs("run-capacity") if j.stage == "qc")
    harness.rt.store.put_task_token("run-capacity", "qc", "token-qc")
    event = {
        "version": "0", "id": "2", "detail-type": "Batch Job Queue Blocked", "source": "aws.batch",
        "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:batch:us-east-1:123456789012:job/{job.job_id}"],
        "detail": {"jobName": job.job_name, "jobId": job.job_id,
                   "statusReason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - instances are on their way"},
    }
    assert client.lambda_.invoke("tracker", event).payload == {"failed": []}
    assert harness.rt.store.put_task_token("run-capacity", "qc", "token-qc").completed is False


@pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
def test_api_cancel_terminates_the_run_jobs_and_ends_it_failed(env) -> None:
    harness, batch, client = env
    _planned_and_submitted(harness, "run-cancel")
    submitted = {j.job_id for j in harness.rt.store.list_jobs("run-cancel")}
    answer = client.http.post("/runs/run-cancel/cancel", headers={"content-type": "application/json"},
                              body=json.dumps({"reason": "wrong reference"}))
    assert answer.status_code == 200, answer.body
    assert answer.json_body["status"] == "FAILED" and set(answer.json_body["stoppedJobs"]) == submitted
    assert {job_id for job_id, _ in batch.terminated} == submitted
    assert {reason for _, reason in batch.terminated} == {"cancelled: wrong reference"}
    run = harness.rt.store.get_run("run-cancel")
    assert run.failures[-1]["reason"] == "cancelled: wrong reference"
    assert any(e["detail"].get("status") == "FAILED" for e in harness.bus_events(1))
    again = client.http.post("/runs/run-cancel/cancel")
    assert again.status_code == 200 and again.json_body["alreadyEnded"] is True
    assert harness.rt.store.get_run("run-cancel").failures == run.failures
    assert client.http.post("/runs/nope/cancel").status_code == 404
    bad = client.http.post("/runs/run-cancel/cancel", headers={"content-type": "application/json"},
                           body=json.dumps({"reason": 3}))
    assert bad.status_code == 400 and "$.reason" in bad.json_body["Message"]


@pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
def test_api_rerun_reuses_published_outputs_by_reference_in_s3(env) -> None:
    harness, _, client = env
    _planned_and_submitted(harness, "run-old", items=2)
    from chalicelib.pipeline.records import RunStatus

    harness.rt.store.update_run("run-old", status=RunStatus.FAILED, ended_at=1)
    old = harness.rt.store.get_run("run-old").prefix
    for stage in ("qc", "align"):  # s0 went through both foreach stages; s1 failed in qc
        harness.rt.s3.put_object(Bucket=BUCKET, Key=f"{old.split('/', 3)[3]}/{stage}/s0/_SUCCESS", Body=b"")
    answer = client.http.post("/runs/run-old/rerun")
    assert answer.status_code == 200, answer.body
    new_id = answer.json_body["runId"]
    new_key = f"{old.split('/', 3)[3].rsplit('/', 1)[0]}/{new_id}"
    for stage in ("qc", "align"):
        body = harness.rt.s3.get_object(Bucket=BUCKET, Key=f"{new_key}/{stage}/s0/_REF")["Body"].read()
        assert body.decode() == f"{old}/{stage}/s0"
    listed = harness.rt.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{new_key}/qc/s1/")
    assert listed.get("KeyCount", 0) == 0  # s1 runs again
    running = harness.rt.store.get_run("run-old")
    assert client.http.post("/runs/nope/rerun").status_code == 404
    assert running.status.value == "FAILED"
