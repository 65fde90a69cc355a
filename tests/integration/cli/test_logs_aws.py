"""`conveyor logs --aws`: the job comes from a Batch API (here the engine, via BATCH_ENDPOINT_URL),
its log from CloudWatch Logs (moto)."""

from __future__ import annotations

import time

import boto3
import pytest
from moto import mock_aws

from chalicelib.cli import main
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.rest import BatchHttpServer
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from tests.helpers import wait_for_status


@pytest.fixture
def served(tmp_path, monkeypatch):
    engine = Engine(tmp_path / "engine", host=HostCapacity(vcpus=2, memory_mib=2048)).start()
    server = BatchHttpServer(engine).start()
    monkeypatch.setenv("BATCH_ENDPOINT_URL", server.url)
    yield engine, server
    server.stop()
    engine.stop()


def _finished_job(server: BatchHttpServer) -> dict:
    batch = boto3.client("batch", endpoint_url=server.url, region_name="us-east-1")
    batch.register_job_definition(
        jobDefinitionName="hello", type="container",
        containerProperties={"image": "local", "command": ["true"],
                             "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                      {"type": "MEMORY", "value": "64"}]})
    job_id = batch.submit_job(jobName="hello", jobQueue="default", jobDefinition="hello")["jobId"]
    return wait_for_status(batch, job_id, "SUCCEEDED")


def test_logs_aws_prints_the_cloudwatch_stream(served, capsys) -> None:
    _, server = served
    job = _finished_job(server)
    stream = job["container"]["logStreamName"]
    now = int(time.time() * 1000)
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        logs.create_log_group(logGroupName="/aws/batch/job")
        logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
        logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=stream,
                            logEvents=[{"timestamp": now, "message": "first line"},
                                       {"timestamp": now + 1, "message": "second line"}])
        assert main(["logs", "--aws", job["jobId"]]) == 0
    assert capsys.readouterr().out.splitlines() == ["first line", "second line"]


def test_logs_aws_names_a_missing_stream(served, capsys) -> None:
    _, server = served
    job = _finished_job(server)
    with mock_aws():
        boto3.client("logs", region_name="us-east-1").create_log_group(logGroupName="/aws/batch/job")
        assert main(["logs", "--aws", job["jobId"]]) == 1
    assert "not found" in capsys.readouterr().err


def test_logs_aws_unknown_job(served, capsys) -> None:
    assert main(["logs", "--aws", "no-such-job"]) == 1
    assert "not found in AWS Batch" in capsys.readouterr().err
