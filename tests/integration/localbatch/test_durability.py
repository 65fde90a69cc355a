"""kill -9 of `conveyor serve`: no accepted job is lost, orphans die, lost attempts end as lost hosts and retry."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import (
    JOBS,
    boto_batch,
    kill_group_quietly,
    pid_alive,
    register,
    stop_serve,
    wait_file,
)

HOST_LOST = {"attempts": 2, "evaluateOnExit": [{"action": "RETRY", "onStatusReason": "Host EC2*"},
                                               {"action": "EXIT", "onReason": "*"}]}


def test_kill_9_loses_no_job_and_recovers_running_attempts(serve, tmp_path: Path) -> None:
    data_dir, marks = tmp_path / "data", tmp_path / "marks"
    marks.mkdir()
    first = serve(data_dir, "--vcpus", "3")
    batch = boto_batch(first.url)
    guarded = register(batch, "guarded", ["python", str(JOBS / "guarded_attempt.py"), str(marks)])
    once = register(batch, "once", ["sh", "-c", f"echo ran >> {marks}/once-$AWS_BATCH_JOB_ID"])
    retried = [batch.submit_job(jobName=f"r{i}", jobQueue="default", jobDefinition=guarded,
                                retryStrategy=HOST_LOST)["jobId"] for i in range(2)]
    no_retry = batch.submit_job(jobName="plain", jobQueue="default", jobDefinition=guarded)["jobId"]
    running = [*retried, no_retry]
    queued = [batch.submit_job(jobName=f"q{i}", jobQueue="default", jobDefinition=once)["jobId"] for i in range(2)]
    array = batch.submit_job(jobName="arr", jobQueue="default", jobDefinition=once,
                             arrayProperties={"size": 3})["jobId"]
    dependent = batch.submit_job(jobName="dep", jobQueue="default", jobDefinition=once,
                                 dependsOn=[{"jobId": retried[0]}])["jobId"]
    accepted = [*running, *queued, array, dependent]
    pids = {}
    try:
        for job in running:
            wait_for_status(batch, job, "RUNNING")
            pids[job] = int(wait_file(marks / f"{job}-1.pid"))
        assert all(batch.describe_jobs(jobs=[j])["jobs"][0]["status"] == "RUNNABLE" for j in queued)

        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        stop_serve(first)
        assert all(pid_alive(pid) for pid in pids.values()), "attempts should outlive the engine (orphans)"

        second = serve(data_dir, "--vcpus", "3")
        batch = boto_batch(second.url)
        described = {j["jobId"]: j for j in batch.describe_jobs(jobs=accepted)["jobs"]}
        assert set(described) == set(accepted), "an accepted job was lost"
        wait_until(lambda: not any(pid_alive(pid) for pid in pids.values()), deadline=15,
                   what="the orphaned attempts to be killed")

        for job in retried:
            detail = wait_for_status(batch, job, "SUCCEEDED")
            assert len(detail["attempts"]) == 2
            lost = detail["attempts"][0]
            assert lost["statusReason"].startswith("Host EC2 (instance i-") and lost["statusReason"].endswith(
                ") terminated.")
        detail = wait_for_status(batch, no_retry, "FAILED")
        assert detail["statusReason"].startswith("Host EC2 (instance i-")
        assert len(detail["attempts"]) == 1
        for job in [*queued, array, dependent]:
            assert wait_for_status(batch, job)["status"] == "SUCCEEDED"
        assert not list(marks.glob("*-OVERLAP")), [p.read_text() for p in marks.glob("*-OVERLAP")]
        for job in [*queued, dependent, *(f"{array}:{i}" for i in range(3))]:
            assert (marks / f"once-{job}").read_text() == "ran\n"  # ran to its final state exactly once
        # The event log survived too: each job's last state change is its final DescribeJobs detail.
        with urllib.request.urlopen(f"{second.url}/events?after=0&limit=10000", timeout=30) as response:
            events = json.loads(response.read())["events"]
        last = {e["detail"]["jobId"]: e["detail"] for e in events if e["detail-type"] == "Batch Job State Change"}
        for detail in batch.describe_jobs(jobs=accepted)["jobs"]:
            assert last[detail["jobId"]] == detail
    finally:
        for pid in pids.values():
            kill_group_quietly(pid)


def test_clean_restart_keeps_resources_and_history(serve, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = serve(data_dir)
    batch = boto_batch(first.url)
    batch.create_job_queue(jobQueueName="extra", priority=3,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}])
    jd = register(batch, "quick", ["true"])
    job = batch.submit_job(jobName="j", jobQueue="extra", jobDefinition=jd)["jobId"]
    before = wait_for_status(batch, job, "SUCCEEDED")
    stop_serve(first)
    second = serve(data_dir)
    batch = boto_batch(second.url)
    assert batch.describe_jobs(jobs=[job])["jobs"][0] == before
    assert {q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]} == {"default", "extra"}
    assert batch.describe_job_definitions(jobDefinitionName="quick")["jobDefinitions"][0]["revision"] == 1
    assert register(batch, "quick", ["true"]).endswith(":2")


def test_kill_9_right_after_launch_never_overlaps_attempts(serve, tmp_path: Path) -> None:
    """The engine dies as soon as the processes exist, before it may have recorded them as RUNNING."""
    data_dir, marks = tmp_path / "data", tmp_path / "marks"
    marks.mkdir()
    first = serve(data_dir)
    batch = boto_batch(first.url)
    guarded = register(batch, "guarded", ["python", str(JOBS / "guarded_attempt.py"), str(marks)])
    jobs = [batch.submit_job(jobName=f"g{i}", jobQueue="default", jobDefinition=guarded,
                             retryStrategy=HOST_LOST)["jobId"] for i in range(2)]
    pids = {}
    try:
        for job in jobs:
            pids[job] = int(wait_file(marks / f"{job}-1.pid"))
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        stop_serve(first)

        second = serve(data_dir)
        batch = boto_batch(second.url)
        for job in jobs:
            detail = wait_for_status(batch, job, "SUCCEEDED")
            assert detail["attempts"][0]["statusReason"].startswith("Host EC2 (instance i-")
            assert len(detail["attempts"]) == 2
        assert not any(pid_alive(pid) for pid in pids.values())
        assert not list(marks.glob("*-OVERLAP")), [p.read_text() for p in marks.glob("*-OVERLAP")]
    finally:
        for pid in pids.values():
            kill_group_quietly(pid)
