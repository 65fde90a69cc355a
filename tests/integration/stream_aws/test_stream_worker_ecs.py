"""The stream worker as it runs in an ECS task: moto's SQS, S3, DynamoDB and EventBridge, and a
fake ECS agent endpoint on loopback that records task scale-in protection requests."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws.stream_worker import CONFIG_VARIABLE, WorkerConfig, WorkerConfigError, build_worker, main
from chalicelib.aws.task_protection import TaskProtection, expiry_minutes

REGION = "us-east-1"
BUCKET = "conveyor-stream-test"
TABLE = "stream-items"
PREFIX = f"s3://{BUCKET}/runs/thumbs-stream"
# The tool: copies its one input file to {out}/copy.txt, upper-cased.
TOOL = [sys.executable, "-c",
        "import sys, pathlib; src = pathlib.Path(sys.argv[1]); "
        "pathlib.Path(sys.argv[2], 'copy.txt').write_text(src.read_text().upper())", "{item}", "{out}"]


class AgentEndpoint:
    """The ECS agent's task-protection endpoint, as far as a worker uses it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, **body})
                reply = json.dumps({"protection": {"ProtectionEnabled": body["ProtectionEnabled"]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/api/task-123"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agent() -> Iterator[AgentEndpoint]:
    endpoint = AgentEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        clients = {name: boto3.client(name, region_name=REGION) for name in ("sqs", "s3", "dynamodb", "events")}
        clients["s3"].create_bucket(Bucket=BUCKET)
        clients["dynamodb"].create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        clients["events"].create_event_bus(Name="conveyor-thumbs")
        urls = {name: clients["sqs"].create_queue(QueueName=name)["QueueUrl"]
                for name in ("thumb", "thumb-dlq", "meta")}
        yield {**clients, "urls": urls}


def _config(aws: dict[str, Any], *, entry: bool = True, grace: float = 5) -> WorkerConfig:
    urls = aws["urls"]
    return WorkerConfig.from_environment({CONFIG_VARIABLE: json.dumps({
        "pipeline": "thumbs", "runId": "thumbs-stream", "stage": "thumb", "prefix": PREFIX,
        "queueUrl": urls["thumb"], "deadLetterUrl": urls["thumb-dlq"], "downstream": {"meta": urls["meta"]},
        "entry": entry, "settings": {"visibility_timeout": 120, "max_receives": 2}, "command": TOOL,
        "itemsTable": TABLE, "eventBus": "conveyor-thumbs", "graceSeconds": grace})})


def _object_created(key: str) -> str:
    # The EventBridge envelope an S3 upload produces (an SQS target receives it as the body).
    return json.dumps({
        "version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "time": "2026-12-07T10:00:00Z", "region": REGION, "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {"version": "0", "bucket": {"name": BUCKET}, "object": {"key": key, "size": 5},
                   "reason": "PutObject"}})


def _worker(aws: dict[str, Any], agent: AgentEndpoint, tmp_path: Path, **config: Any):  # type: ignore[no-untyped-def]
    cfg = _config(aws, **config)
    protection = TaskProtection(agent.uri, expires_minutes=expiry_minutes(cfg.settings.visibility_timeout))
    return build_worker(cfg, {"HOSTNAME": "task-1"}, sqs=aws["sqs"], dynamodb=aws["dynamodb"], events=aws["events"],
                        protection=protection, scratch=tmp_path, wait_seconds=0)


def test_an_s3_arrival_runs_publishes_passes_on_and_protects_the_task_while_busy(
        aws: dict[str, Any], agent: AgentEndpoint, tmp_path: Path) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key="inbox/cat.txt", Body=b"hello")
    aws["sqs"].send_message(QueueUrl=aws["urls"]["thumb"], MessageBody=_object_created("inbox/cat.txt"))
    worker = _worker(aws, agent, tmp_path)

    assert worker.run_once() is True

    out = aws["s3"].get_object(Bucket=BUCKET, Key="runs/thumbs-stream/thumb/cat/copy.txt")
    assert out["Body"].read() == b"HELLO"
    passed = aws["sqs"].receive_message(QueueUrl=aws["urls"]["meta"])["Messages"]
    body = json.loads(passed[0]["Body"])
    assert (body["stage"], body["item"]["key"], body["item"]["files"]) == ("meta", "cat", [f"s3://{BUCKET}/inbox/cat.txt"])
    assert "Messages" not in aws["sqs"].receive_message(QueueUrl=aws["urls"]["thumb"])  # deleted after success
    record = worker.items.list_items("thumbs-stream", "thumb")[0]
    assert (record.key, record.status.value, record.worker) == ("cat", "SUCCEEDED", "task-1")
    # protected while the message was held, with an expiry covering the visibility timeout; cleared when
    # the worker is idle again (its next receive)
    assert [r["ProtectionEnabled"] for r in agent.requests] == [True]
    assert worker.run_once() is False
    assert [r["ProtectionEnabled"] for r in agent.requests] == [True, False]
    assert agent.requests[0]["path"] == "/api/task-123/task-protection/v1/state"
    assert agent.requests[0]["ExpiresInMinutes"] * 60 >= 120


def test_a_failing_item_dead_letters_after_max_receives_with_its_reason(
        aws: dict[str, Any], agent: AgentEndpoint, tmp_path: Path) -> None:
    # The object does not exist: staging fails on every receive.
    aws["sqs"].send_message(QueueUrl=aws["urls"]["thumb"], MessageBody=_object_created("inbox/missing.txt"))
    worker = _worker(aws, agent, tmp_path)
    assert worker.run_once() is True  # receive 1: fails, comes back after a 1 s backoff
    record = worker.items.list_items("thumbs-stream", "thumb")[0]
    assert record.status.value == "RETRYING"
    deadline = time.monotonic() + 10
    while not worker.run_once() and time.monotonic() < deadline:  # receive 2 (max_receives): dead-lettered
        time.sleep(0.2)
    dead = aws["sqs"].receive_message(QueueUrl=aws["urls"]["thumb-dlq"], MessageAttributeNames=["All"])["Messages"]
    assert dead[0]["MessageAttributes"]["stage"]["StringValue"] == "thumb"
    assert dead[0]["MessageAttributes"]["reason"]["StringValue"]
    record = worker.items.list_items("thumbs-stream", "thumb")[0]
    assert record.status.value == "DEAD_LETTERED" and record.reason


def test_sigterm_while_busy_finishes_the_item_then_stops_and_releases_protection(
        aws: dict[str, Any], agent: AgentEndpoint, tmp_path: Path) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key="inbox/dog.txt", Body=b"woof")
    aws["sqs"].send_message(QueueUrl=aws["urls"]["thumb"], MessageBody=_object_created("inbox/dog.txt"))
    worker = _worker(aws, agent, tmp_path)
    states: list[str] = []
    hook = worker.on_state

    def on_state(state: str) -> None:
        states.append(state)
        hook(state)
        if state == "busy":
            worker.request_stop()  # what the SIGTERM handler does

    worker.on_state = on_state
    worker.run()
    assert states[-1] == "stopped" and "busy" in states
    assert aws["s3"].get_object(Bucket=BUCKET, Key="runs/thumbs-stream/thumb/dog/copy.txt")["Body"].read() == b"WOOF"
    assert agent.requests[-1]["ProtectionEnabled"] is False


def test_protection_is_a_no_op_without_an_agent_and_survives_an_agent_that_is_down() -> None:
    assert TaskProtection(None, expires_minutes=5).set(True) is False
    down = TaskProtection("http://127.0.0.1:9", expires_minutes=5, timeout_s=0.5)
    assert down.set(True) is False and down.protected is False
    assert expiry_minutes(30) == 2 and expiry_minutes(10**6) == 2880 and expiry_minutes(0) == 1


def test_bad_worker_configuration_names_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(WorkerConfigError, match="CONVEYOR_STREAM_WORKER is not set"):
        WorkerConfig.from_environment({})
    with pytest.raises(WorkerConfigError, match="lacks .*queueUrl"):
        WorkerConfig.from_environment({CONFIG_VARIABLE: json.dumps({"pipeline": "p", "runId": "r"})})
    with pytest.raises(WorkerConfigError, match="command must be a list of strings"):
        WorkerConfig.from_environment({CONFIG_VARIABLE: json.dumps({
            name: "x" for name in ("pipeline", "runId", "stage", "prefix", "queueUrl", "deadLetterUrl",
                                   "itemsTable", "eventBus", "command")})})
    assert main([], {}) == 2
    assert "CONVEYOR_STREAM_WORKER is not set" in capsys.readouterr().err
