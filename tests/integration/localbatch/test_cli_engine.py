"""The engine from the outside: the aws CLI as a second client, `conveyor logs/events/jobs`, bind safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for_status
from tests.integration.localbatch.conftest import (
    REPO,
    boto_batch,
    conveyor_argv,
    register,
    run_cli,
)

AWS = Path(sys.executable).parent / "aws"


def aws(url: str, *args: str) -> dict:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "dummy", "AWS_SECRET_ACCESS_KEY": "dummy",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("AWS_SESSION_TOKEN", None)
    done = subprocess.run([str(AWS), "batch", *args, "--endpoint-url", url, "--region", "us-east-1",
                           "--output", "json"], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.mark.skipif(not AWS.exists(), reason=f"the aws CLI is not installed at {AWS} (pip install awscli)")
def test_aws_cli_is_a_second_client(serve) -> None:
    server = serve()
    queues = aws(server.url, "describe-job-queues")["jobQueues"]
    assert [q["jobQueueName"] for q in queues] == ["default"]
    register(boto_batch(server.url), "hello", ["sh", "-c", "echo from-aws-cli"])
    submitted = aws(server.url, "submit-job", "--job-name", "cli-job", "--job-queue", "default",
                    "--job-definition", "hello", "--array-properties", "size=2")
    job_id = submitted["jobId"]
    wait_for_status(boto_batch(server.url), job_id, "SUCCEEDED")
    described = aws(server.url, "describe-jobs", "--jobs", job_id)["jobs"][0]
    assert described["status"] == "SUCCEEDED" and described["jobName"] == "cli-job"
    assert described["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 2
    children = aws(server.url, "list-jobs", "--array-job-id", job_id, "--job-status", "SUCCEEDED")
    assert len(children["jobSummaryList"]) == 2
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "d", "AWS_SECRET_ACCESS_KEY": "d"}
    bad = subprocess.run([str(AWS), "batch", "describe-jobs", "--jobs", *[f"j{i}" for i in range(101)],
                          "--endpoint-url", server.url, "--region", "us-east-1"],
                         capture_output=True, text=True, timeout=60, env=env, check=False)
    assert bad.returncode != 0
    assert "ClientException" in bad.stderr and "100" in bad.stderr


def test_logs_events_and_jobs_commands(serve, tmp_path: Path) -> None:
    server = serve()
    batch = boto_batch(server.url)
    jd = register(batch, "talk", ["sh", "-c", ('echo "out $AWS_BATCH_JOB_ATTEMPT"; echo "err" >&2; '
                                              'test "$AWS_BATCH_JOB_ATTEMPT" -ge 2')])
    job = batch.submit_job(jobName="talker", jobQueue="default", jobDefinition=jd,
                           retryStrategy={"attempts": 2})["jobId"]
    wait_for_status(batch, job, "SUCCEEDED")
    data = str(server.data_dir)
    for target in (["--data-dir", data], ["--endpoint-url", server.url]):
        latest = run_cli("logs", job, *target)
        assert latest.returncode == 0, latest.stderr
        assert latest.stdout.splitlines() == ["out 2", "err"]
        first = run_cli("logs", job, "--attempt", "1", *target)
        assert first.stdout.splitlines() == ["out 1", "err"]
        missing = run_cli("logs", "no-such-job", *target)
        assert missing.returncode != 0 and "no-such-job" in missing.stderr
        events = run_cli("events", "--job-id", job, *target)
        assert events.returncode == 0, events.stderr
        lines = [json.loads(line) for line in events.stdout.splitlines()]
        assert [e["detail"]["status"] for e in lines] == [
            "RUNNABLE", "STARTING", "RUNNING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
        assert all(e["detail-type"] == "Batch Job State Change" for e in lines)
        assert lines[-1]["detail"] == batch.describe_jobs(jobs=[job])["jobs"][0]
        listing = run_cli("jobs", *target)
        assert listing.returncode == 0 and job in listing.stdout and "SUCCEEDED" in listing.stdout


def test_events_follow_prints_new_events(serve) -> None:
    server = serve()
    batch = boto_batch(server.url)
    follower = subprocess.Popen(conveyor_argv("events", "--follow", "--endpoint-url", server.url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        job = batch.submit_job(jobName="f", jobQueue="default",
                               jobDefinition=register(batch, "quick", ["true"]))["jobId"]
        assert follower.stdout is not None
        statuses = []
        while "SUCCEEDED" not in statuses:
            line = follower.stdout.readline()  # a hang here is caught by pytest's overall timeout
            assert line, follower.stderr.read() if follower.stderr else "follower exited"
            event = json.loads(line)
            if event["detail"]["jobId"] == job:
                statuses.append(event["detail"]["status"])
        assert statuses == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    finally:
        follower.terminate()
        follower.communicate(timeout=10)


def test_non_loopback_bind_needs_allow_remote(tmp_path: Path) -> None:
    refused = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d"), timeout=30)
    assert refused.returncode != 0
    assert "--allow-remote" in refused.stderr and "0.0.0.0" in refused.stderr
    assert not (tmp_path / "d" / "state.sqlite3").exists()  # refused before touching any state
    proc = subprocess.Popen(conveyor_argv("serve", "--host", "0.0.0.0", "--allow-remote", "--port", "0",
                                          "--data-dir", str(tmp_path / "d2"), "--vcpus", "1", "--memory", "512"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        banner = proc.stdout.readline()
        assert "serving" in banner and "0.0.0.0" in banner
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "WARNING" in err and "authentication" in err
    assert proc.returncode == 0


@pytest.mark.parametrize(("option", "value"), [
    ("--spot-reclaim-rate", "2"), ("--port", "99999"), ("--vcpus", "0"), ("--memory", "0"), ("--gpus", "-1"),
    ("--kill-grace", "-1"), ("--data-dir", "FILE"),
])
def test_serve_rejects_bad_options(tmp_path: Path, option: str, value: str) -> None:
    if value == "FILE":
        value = str(tmp_path / "a-file")
        Path(value).write_text("not a folder")
    args = {"--port": "0", "--data-dir": str(tmp_path / "d"), option: value}
    bad = run_cli("serve", *[part for pair in args.items() for part in pair], timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"error: {option}") and "Traceback" not in bad.stderr


def test_serve_spot_reclaim_rate_applies_to_untagged_spot_environments(serve) -> None:
    server = serve(None, "--spot-reclaim-rate", "1.0", "--seed", "3", "--gpus", "2")
    assert "2 GPUs" in server.banner
    batch = boto_batch(server.url)
    batch.create_compute_environment(computeEnvironmentName="spot", type="MANAGED",
                                     computeResources={"type": "SPOT", "maxvCpus": 2, "subnets": []})
    batch.create_job_queue(jobQueueName="spotq", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "spot"}])
    jd = register(batch, "idle", ["sleep", "30"])
    spot_job = batch.submit_job(jobName="s", jobQueue="spotq", jobDefinition=jd)["jobId"]
    on_demand = batch.submit_job(jobName="d", jobQueue="default",
                                 jobDefinition=register(batch, "quick", ["true"]))["jobId"]
    detail = wait_for_status(batch, spot_job, "FAILED", deadline=20)
    assert detail["statusReason"].startswith("Host EC2 (instance i-")
    assert wait_for_status(batch, on_demand)["status"] == "SUCCEEDED"  # EC2 environments are never reclaimed


def test_serve_on_a_busy_port_fails_cleanly(tmp_path: Path) -> None:
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "d"), "--vcpus", "1",
                       "--memory", "512", timeout=30)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_errors_are_messages_not_tracebacks(serve) -> None:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there once closed
    for args in (["jobs"], ["logs", "x"], ["events"]):
        done = run_cli(*args, "--endpoint-url", dead)
        assert done.returncode != 0 and "cannot reach the engine" in done.stderr and "Traceback" not in done.stderr
    server = serve()
    done = run_cli("jobs", "--status", "BOGUS", "--endpoint-url", server.url)
    assert done.returncode == 2 and "--status: expected one of SUBMITTED" in done.stderr
    assert "Traceback" not in done.stderr
