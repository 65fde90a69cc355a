"""Metaflow's @batch, unchanged, against `conveyor serve` started with a clean environment.

The datastore is a local S3 (moto's server); the jobs get their S3 credentials the way ECS
containers do (AWS_CONTAINER_CREDENTIALS_FULL_URI, from --job-credentials for the flow's
jobRoleArn), their interpreter from the image's runtime folder, and nothing of the engine's
environment. Neither the flow nor the engine's environment carries a workaround.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import metaflow  # noqa: F401 (a test dependency: the flow below runs with it; a missing one must fail, not skip)
import moto.server as moto_server
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
ROLE = "arn:aws:iam::000000000000:role/metaflow-batch"

FLOW = textwrap.dedent('''
    from metaflow import FlowSpec, batch, step


    class SquareSumFlow(FlowSpec):
        @step
        def start(self):
            self.items = [1, 2, 3]
            self.next(self.square, foreach="items")

        @batch(cpu=1, memory=1024)
        @step
        def square(self):
            self.value = self.input * self.input
            print("squared", self.input, "->", self.value)
            self.next(self.join)

        @batch(cpu=1, memory=1024)
        @step
        def join(self, inputs):
            self.total = sum(item.value for item in inputs)
            print("TOTAL", self.total)
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        SquareSumFlow()
''')

SLEEPY = FLOW.replace("SquareSumFlow", "SleepyFlow").replace(
    "self.value = self.input * self.input", "import time; time.sleep(300); self.value = 0")


@pytest.fixture
def s3_url() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
                 aws_secret_access_key="s").create_bucket(Bucket="flows")
    yield url
    server.stop()


@pytest.fixture
def engine_url(tmp_path: Path) -> Iterator[str]:
    creds = tmp_path / "job-credentials.json"
    creds.write_text(json.dumps({ROLE: {"AccessKeyId": "job-key", "SecretAccessKey": "job-secret"}}))
    # A clean environment: only where the checkout's code is, and a home of its own.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "serve", "--port", "0",
                             "--data-dir", str(tmp_path / "engine"), "--job-credentials", str(creds)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"on (http://\S+)", line)
    assert match, line
    yield match.group(1)
    proc.terminate()
    proc.wait(30)


def _client_env(tmp_path: Path, engine_url: str, s3_url: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "client-home"),
        "USERNAME": "tester", "PYTHONPATH": str(REPO),
        "AWS_ACCESS_KEY_ID": "client-key", "AWS_SECRET_ACCESS_KEY": "client-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_BATCH": engine_url,  # the standard way to point boto3 at the engine
        "METAFLOW_DEFAULT_DATASTORE": "s3", "METAFLOW_DATASTORE_SYSROOT_S3": "s3://flows/metaflow",
        "METAFLOW_S3_ENDPOINT_URL": s3_url, "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_BATCH_JOB_QUEUE": "default", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": ROLE,
        "METAFLOW_BATCH_CONTAINER_IMAGE": "python:3.11",
    }


def test_foreach_flow_runs_on_the_engine_with_batch(tmp_path: Path, engine_url: str, s3_url: str) -> None:
    flow = tmp_path / "square_sum.py"
    flow.write_text(FLOW)
    env = _client_env(tmp_path, engine_url, s3_url)
    result = subprocess.run([sys.executable, str(flow), "--no-pylint", "run"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "TOTAL 14" in output  # 1 + 4 + 9, from the join's own log
    batch = boto3.client("batch", endpoint_url=engine_url, region_name="us-east-1",
                         aws_access_key_id="k", aws_secret_access_key="s")
    jobs = batch.list_jobs(jobQueue="default", jobStatus="SUCCEEDED")["jobSummaryList"]
    join = next(job for job in jobs if "join" in job["jobName"])
    logs = subprocess.run([sys.executable, "-m", "chalicelib.cli", "logs", join["jobId"],
                           "--endpoint-url", engine_url], env=env, capture_output=True, text=True, timeout=60)
    assert "TOTAL 14" in logs.stdout, logs.stdout[-2000:] + logs.stderr[-2000:]


def test_batch_kill_ends_a_running_step(tmp_path: Path, engine_url: str, s3_url: str) -> None:
    flow = tmp_path / "sleepy.py"
    flow.write_text(SLEEPY)
    env = _client_env(tmp_path, engine_url, s3_url)
    run = subprocess.Popen([sys.executable, str(flow), "--no-pylint", "run"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    batch = boto3.client("batch", endpoint_url=engine_url, region_name="us-east-1",
                         aws_access_key_id="k", aws_secret_access_key="s")
    try:
        deadline = time.monotonic() + 300
        while not batch.list_jobs(jobQueue="default", jobStatus="RUNNING")["jobSummaryList"]:
            assert time.monotonic() < deadline and run.poll() is None, "no @batch step started"
            time.sleep(1)
        killed = subprocess.run([sys.executable, str(flow), "--no-pylint", "batch", "kill", "--my-runs"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert killed.returncode == 0, killed.stdout[-2000:] + killed.stderr[-2000:]
        output, _ = run.communicate(timeout=300)
        assert run.returncode != 0, output[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
    assert not batch.list_jobs(jobQueue="default", jobStatus="RUNNING")["jobSummaryList"]
    failed = batch.list_jobs(jobQueue="default", jobStatus="FAILED")["jobSummaryList"]
    details = batch.describe_jobs(jobs=[job["jobId"] for job in failed])["jobs"]
    assert any(detail["statusReason"] == "Metaflow initiated job termination." for detail in details), details
