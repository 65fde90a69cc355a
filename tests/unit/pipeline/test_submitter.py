"""Submitter: exact SubmitJob requests, idempotent resume after a crash, definitions registered only when changed."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.local.runstore import SqliteRunStore
from chalicelib.pipeline import payloads
from chalicelib.pipeline.planner import plan
from chalicelib.pipeline.spec import load_spec
from chalicelib.pipeline.submitter import (
    SubmissionError,
    ensure_job_definitions,
    submit_plan,
    terminate_run,
)
from tests.unit.pipeline.batch_fake import FakeBatch

SPEC = """
name: demo
stages:
  - name: a
    image: img
    command: [a, "{item}", "{out}"]
    foreach: item
  - name: b
    image: img
    command: [b, "{a}", "{out}"]
    foreach: item
    after: [a]
  - name: c
    image: img
    command: [c, "{b}"]
    after: [b]
"""


@pytest.fixture()
def spec():  # type: ignore[no-untyped-def]
    return load_spec(SPEC)


@pytest.fixture()
def store(tmp_path: Path) -> SqliteRunStore:
    return SqliteRunStore(tmp_path / "runs.db")


def _ctx(definitions: dict[str, str] | None = None) -> payloads.SubmitContext:
    return payloads.SubmitContext(
        run_id="r1", prefix="file:///data/runs/r1", queues={"spot": "default", "on-demand": "default", "gpu": "default"},
        definitions=definitions or {"a": "da:1", "b": "db:1", "c": "dc:1"},
    )


def test_submit_job_parameters_are_exact(spec, store) -> None:  # type: ignore[no-untyped-def]
    client = boto3.client("batch", region_name="us-east-1")
    planned = plan(spec, 3, run_id="r1")
    stubber = Stubber(client)
    ids = {"a": "11111111-aaaa", "b": "22222222-bbbb", "c": "33333333-cccc"}
    known: dict[str, str] = {}
    for job in planned.jobs:
        stubber.add_response("list_jobs", {"jobSummaryList": []}, {
            "jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": [job.name]}],
        })
        expected = payloads.to_submit_job(spec, job, _ctx(), known)
        stubber.add_response("submit_job", {"jobName": job.name, "jobId": ids[job.key], "jobArn": "arn"}, expected)
        known[job.key] = ids[job.key]
    with stubber:
        result = submit_plan(spec, planned, batch=client, store=store, ctx=_ctx())
    stubber.assert_no_pending_responses()
    assert result == ids
    assert expected["dependsOn"] == [{"jobId": "22222222-bbbb"}]


def test_every_job_is_recorded_before_the_next(spec, store) -> None:  # type: ignore[no-untyped-def]
    batch = FakeBatch()
    planned = plan(spec, 4, run_id="r1")
    seen: list[list[str]] = []
    submit_plan(
        spec, planned, batch=batch, store=store, ctx=_ctx(),
        on_submit=lambda job, _id: seen.append([j.key for j in store.list_jobs("r1")]),
    )
    assert seen == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert batch.count("submit_job") == 3


def test_resume_after_crash_between_submit_and_record_submits_nothing_twice(spec, store) -> None:  # type: ignore[no-untyped-def]
    batch = FakeBatch()
    planned = plan(spec, 4, run_id="r1")

    class Crash(Exception):
        pass

    def crash_after_first(job, _id):  # type: ignore[no-untyped-def]
        raise Crash()

    with pytest.raises(Crash):
        submit_plan(spec, planned, batch=batch, store=store, ctx=_ctx(), on_submit=crash_after_first)
    # Simulate the worse crash: job "b" submitted to Batch but never recorded.
    batch.submit_job(**payloads.to_submit_job(spec, planned.job("b"), _ctx(), {"a": store.get_job("r1", "a").job_id}))
    result = submit_plan(spec, planned, batch=batch, store=store, ctx=_ctx())
    assert batch.count("submit_job") == 3  # a, b (the unrecorded one), c
    assert result["b"] == "job-2"
    assert [j.key for j in store.list_jobs("r1")] == ["a", "b", "c"]
    again = submit_plan(spec, planned, batch=batch, store=store, ctx=_ctx())
    assert again == result and batch.count("submit_job") == 3


def test_botocore_failure_becomes_submission_error_naming_the_stage(spec, store) -> None:  # type: ignore[no-untyped-def]
    batch = FakeBatch()
    batch.fail_submit_after = 1
    with pytest.raises(SubmissionError) as info:
        submit_plan(spec, plan(spec, 2, run_id="r1"), batch=batch, store=store, ctx=_ctx())
    assert (info.value.stage, info.value.code) == ("b", "ClientException")
    assert info.value.__cause__ is not None
    assert [j.key for j in store.list_jobs("r1")] == ["a"]


def test_deferred_joins_are_not_submitted_up_front(store) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(SPEC.replace("    after: [b]\n", "    after: [b]\n    allow_failed_items: true\n"))
    batch = FakeBatch()
    submit_plan(spec, plan(spec, 3, run_id="r1"), batch=batch, store=store, ctx=_ctx())
    assert [j.key for j in store.list_jobs("r1")] == ["a", "b"]


def test_job_definitions_registered_only_when_changed(spec) -> None:  # type: ignore[no-untyped-def]
    batch = FakeBatch()
    first = ensure_job_definitions(batch, spec)
    assert first == {"a": "conveyor-demo-a:1", "b": "conveyor-demo-b:1", "c": "conveyor-demo-c:1"}
    assert ensure_job_definitions(batch, spec) == first
    assert batch.count("register_job_definition") == 3
    changed = load_spec(SPEC.replace("command: [c, \"{b}\"]", "command: [c2, \"{b}\"]"))
    second = ensure_job_definitions(batch, changed)
    assert second["c"] == "conveyor-demo-c:2" and second["a"] == "conveyor-demo-a:1"
    assert batch.count("register_job_definition") == 4


def test_given_definitions_are_used_as_is(spec) -> None:  # type: ignore[no-untyped-def]
    batch = FakeBatch()
    given = {"a": "arn:aws:batch:us-east-1:1:job-definition/a:7"}
    result = ensure_job_definitions(batch, spec, given=given)
    assert result["a"] == given["a"]
    assert batch.count("register_job_definition") == 2


def test_terminate_run_skips_finished_jobs(spec, store) -> None:  # type: ignore[no-untyped-def]
    batch = FakeBatch()
    submit_plan(spec, plan(spec, 2, run_id="r1"), batch=batch, store=store, ctx=_ctx())
    store.advance_job(store.get_job("r1", "a").job_id, "SUCCEEDED")
    terminated = terminate_run(batch, store, "r1", "interrupted")
    assert terminated == [store.get_job("r1", "b").job_id, store.get_job("r1", "c").job_id]
