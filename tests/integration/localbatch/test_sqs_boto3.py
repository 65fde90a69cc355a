"""boto3's SQS client, unchanged, against the engine's SQS (JSON 1.0 protocol on the Batch API's port)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.integration.localbatch.conftest import LiveEngine, stop_serve


def boto_sqs(url: str) -> Any:
    return boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30))


@pytest.fixture
def sqs(live: LiveEngine) -> Any:
    return boto_sqs(live.url)


def attributes(sqs: Any, url: str) -> dict[str, int]:
    raw = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {k: int(v) for k, v in raw.items() if k.startswith("ApproximateNumber")}


def test_send_receive_delete_and_counts(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    assert sqs.get_queue_url(QueueName="work")["QueueUrl"] == url
    assert sqs.create_queue(QueueName="work")["QueueUrl"] == url  # idempotent with the same attributes
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello",
                            MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}})
    assert sent["MD5OfMessageBody"] == "5d41402abc4b2a76b9719d911017c592"
    assert attributes(sqs, url)["ApproximateNumberOfMessages"] == 1
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["hello"]
    assert got[0]["MessageAttributes"]["kind"]["StringValue"] == "greeting"
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    counts = attributes(sqs, url)
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == (0, 1)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # in flight: not handed out again
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert attributes(sqs, url)["ApproximateNumberOfMessagesNotVisible"] == 0


def test_batch_calls_and_per_entry_failures(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="batched")["QueueUrl"]
    sent = sqs.send_message_batch(QueueUrl=url, Entries=[
        *({"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(5)), {"Id": "empty", "MessageBody": ""}])
    assert sorted(e["Id"] for e in sent["Successful"]) == [f"m{i}" for i in range(5)]
    assert [(e["Id"], e["SenderFault"]) for e in sent["Failed"]] == [("empty", True)]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == [f"body {i}" for i in range(5)]
    entries = [{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[*entries, {"Id": "bad", "ReceiptHandle": "nonsense"}])
    assert len(deleted["Successful"]) == 5
    assert [(f["Id"], f["Code"]) for f in deleted["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}] * 2)
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=[])


def test_modelled_exceptions(sqs: Any, live: LiveEngine) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as raised:
        sqs.get_queue_url(QueueName="nope")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=f"{live.url}/000000000000/nope", MessageBody="x")
    sqs.create_queue(QueueName="strict", Attributes={"VisibilityTimeout": "10"})
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName="strict", Attributes={"VisibilityTimeout": "20"})
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName="odd", Attributes={"Colour": "blue"})
    with pytest.raises(sqs.exceptions.ClientError, match="VisibilityTimeout"):
        sqs.receive_message(QueueUrl=f"{live.url}/000000000000/strict", VisibilityTimeout=-1)
    url = sqs.get_queue_url(QueueName="strict")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")


def test_long_polling_returns_as_soon_as_a_message_arrives(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="poll")["QueueUrl"]
    threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=url, MessageBody="late")).start()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"]
    assert [m["Body"] for m in got] == ["late"]
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.monotonic() - started >= 0.9  # it did wait (a lower bound, not a timing assertion)


def test_visibility_change_and_redrive_to_dead_letter_queue(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName="work2")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for receive in (1, 2):
        message = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
        assert message["Attributes"]["ApproximateReceiveCount"] == str(receive)
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # the third receive moves it instead
    moved = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"], WaitTimeSeconds=2)["Messages"]
    assert moved[0]["Body"] == "poison"
    assert moved[0]["Attributes"]["DeadLetterQueueSourceArn"].endswith(":work2")


def test_accepted_message_survives_kill_9_of_the_engine(serve: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = serve(data_dir)
    sqs = boto_sqs(first.url)
    url = sqs.create_queue(QueueName="durable")["QueueUrl"]
    ids = {sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")["MessageId"] for i in range(3)}
    in_flight = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    stop_serve(first)

    second = serve(data_dir)
    sqs = boto_sqs(second.url)
    url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
    got: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while len(got) < 3 and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", []):
            got[message["MessageId"]] = message["Body"]
    assert set(got) == ids
    assert in_flight["MessageId"] in got  # the one in flight came back after its visibility timeout
