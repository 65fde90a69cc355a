"""The stream stack's deploy-time resources: the smoke item against moto's S3 and DynamoDB, the
release guard's kind, and the Lambda entry point answering CloudFormation on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.aws import stream_deploy
from chalicelib.aws.stream_deploy import SmokeFailed, handle, run_smoke, smoke_key

REGION = "us-east-1"
PROPS = {"Kind": "smoke", "Pipeline": "thumbs", "Bucket": "data", "InboxPrefix": "inbox/",
         "SampleBucket": "assets", "SampleKey": "sample.txt", "SampleName": "sample.txt",
         "SinkStages": ["meta"], "RunPrefix": "runs/thumbs-stream/", "RunId": "thumbs-stream", "ItemsTable": "items"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        db = boto3.client("dynamodb", region_name=REGION)
        for bucket in ("data", "assets"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="assets", Key="sample.txt", Body=b"smoke")
        db.create_table(TableName="items", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}])
        yield {"s3": s3, "dynamodb": db}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_smoke_key_keeps_the_extension_and_names_the_item() -> None:
    assert smoke_key("inbox/", "cat.png", "abcdef0123") == ("inbox/conveyor-smoke-abcdef01-cat.png",
                                                             "conveyor-smoke-abcdef01-cat")
    assert smoke_key("inbox/", "README", "r1") == ("inbox/conveyor-smoke-r1-README", "conveyor-smoke-r1-README")


def test_smoke_uploads_the_sample_and_succeeds_once_every_last_stage_published(aws: dict[str, Any]) -> None:
    clock = FakeClock()
    item = smoke_key("inbox/", "sample.txt", "req-1234")[1]

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= 30:  # the workers publish after a while
            aws["s3"].put_object(Bucket="data", Key=f"runs/thumbs-stream/meta/{item}/_SUCCESS", Body=b"")

    data = run_smoke(PROPS, "req-1234", s3=aws["s3"], dynamodb=aws["dynamodb"], clock=clock, sleep=sleep)
    assert data == {"SmokeItem": item}
    assert aws["s3"].get_object(Bucket="data", Key=f"inbox/{item}.txt")["Body"].read() == b"smoke"
    assert clock.now >= 30


def test_a_dead_lettered_smoke_item_fails_the_deploy_with_its_stage_and_reason(aws: dict[str, Any]) -> None:
    item = smoke_key("inbox/", "sample.txt", "req-1")[1]
    aws["dynamodb"].put_item(TableName="items", Item={
        "pk": {"S": "thumbs-stream"}, "sk": {"S": f"thumb#{item}"}, "stage": {"S": "thumb"},
        "itemKey": {"S": item}, "status": {"S": "DEAD_LETTERED"}, "receives": {"N": "3"},
        "reason": {"S": "tool exited 1: cannot decode image"}})
    clock = FakeClock()
    with pytest.raises(SmokeFailed, match="dead-lettered in stage 'thumb': tool exited 1"):
        run_smoke(PROPS, "req-1", s3=aws["s3"], dynamodb=aws["dynamodb"], clock=clock, sleep=clock.sleep)


def test_a_smoke_item_that_never_comes_out_fails_after_the_wait(aws: dict[str, Any]) -> None:
    clock = FakeClock()
    with pytest.raises(SmokeFailed, match="not published by meta within 120 s"):
        run_smoke(PROPS, "req-2", s3=aws["s3"], dynamodb=aws["dynamodb"], clock=clock, sleep=clock.sleep,
                  wait_seconds=120)


def test_the_release_kind_applies_the_version_guard(aws: dict[str, Any]) -> None:
    event = {"RequestType": "Update", "StackId": "arn:aws:cloudformation:us-east-1:1:stack/x/1",
             "ResourceProperties": {"Kind": "release", "Pipeline": "thumbs", "Version": "0.1.0", "Images": []},
             "OldResourceProperties": {"Version": "0.2.0"}}
    clients = {"cloudformation": type("CF", (), {"describe_stacks": staticmethod(
        lambda StackName: {"Stacks": [{"StackStatus": "UPDATE_IN_PROGRESS"}]})})(), "ecr": None}
    with pytest.raises(Exception, match="0.2.0"):
        handle(event, clients.__getitem__)
    with pytest.raises(ValueError, match="unknown custom resource kind 'other'"):
        handle({"ResourceProperties": {"Kind": "other"}}, clients.__getitem__)


def test_the_handler_always_answers_cloudformation(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/response"
    base = {"ResponseURL": url, "StackId": "s", "RequestId": "r", "LogicalResourceId": "Smoke"}
    try:
        assert stream_deploy.handler({**base, "RequestType": "Delete", "ResourceProperties": {"Kind": "smoke"}},
                                     None) == {"Status": "SUCCESS"}
        assert stream_deploy.handler({**base, "RequestType": "Create", "ResourceProperties": {"Kind": "?"}},
                                     None) == {"Status": "FAILED"}
    finally:
        server.shutdown()
        server.server_close()
    assert [a["Status"] for a in answers] == ["SUCCESS", "FAILED"]
    assert "unknown custom resource kind" in answers[1]["Reason"]
