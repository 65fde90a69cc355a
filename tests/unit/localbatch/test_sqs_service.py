"""The engine's SQS service in process: a fake clock for visibility and retention, and malformed requests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from chalicelib.localbatch.clock import FakeClock
from chalicelib.localbatch.sqs.errors import SqsError
from chalicelib.localbatch.sqs.service import SqsService

BASE = "http://127.0.0.1:1"
URL = f"{BASE}/000000000000/q"


@pytest.fixture
def sqs(tmp_path: Path) -> tuple[SqsService, FakeClock]:
    clock = FakeClock()
    service = SqsService(tmp_path / "sqs.sqlite3", clock)
    service.call("CreateQueue", {"QueueName": "q", "Attributes": {"VisibilityTimeout": "10"}}, BASE)
    return service, clock


def counts(service: SqsService) -> tuple[int, int, int]:
    got = service.call("GetQueueAttributes", {"QueueUrl": URL, "AttributeNames": ["All"]}, BASE)["Attributes"]
    return (int(got["ApproximateNumberOfMessages"]), int(got["ApproximateNumberOfMessagesNotVisible"]),
            int(got["ApproximateNumberOfMessagesDelayed"]))


def test_visibility_timeout_delay_and_retention_follow_the_clock(sqs: tuple[SqsService, FakeClock]) -> None:
    service, clock = sqs
    service.call("SendMessage", {"QueueUrl": URL, "MessageBody": "a"}, BASE)
    service.call("SendMessage", {"QueueUrl": URL, "MessageBody": "later", "DelaySeconds": 5}, BASE)
    assert counts(service) == (1, 0, 1)
    first = service.call("ReceiveMessage", {"QueueUrl": URL}, BASE)["Messages"][0]
    assert counts(service) == (0, 1, 1)
    clock.advance(5)
    assert [m["Body"] for m in service.call("ReceiveMessage", {"QueueUrl": URL}, BASE)["Messages"]] == ["later"]
    clock.advance(5)  # the first message's 10 s are up: visible again, and the old handle is stale
    again = service.call("ReceiveMessage", {"QueueUrl": URL}, BASE)["Messages"][0]
    assert again["MessageId"] == first["MessageId"] and again["ReceiptHandle"] != first["ReceiptHandle"]
    service.call("DeleteMessage", {"QueueUrl": URL, "ReceiptHandle": first["ReceiptHandle"]}, BASE)
    assert counts(service)[1] == 2  # a stale handle deletes nothing
    clock.advance(345_601)  # past the default retention of 4 days
    assert service.call("ReceiveMessage", {"QueueUrl": URL}, BASE) == {}
    assert counts(service) == (0, 0, 0)


VALUES: list[Any] = [None, 1, -1, True, "x", "", [], [1], ["All"], {}, {"a": 1}, {"DataType": "String"}, 1.5,
                     [None], [{}], [{"Id": "a"}], 10**20]
FIELDS = ["QueueUrl", "QueueName", "Attributes", "AttributeNames", "MessageSystemAttributeNames",
          "MessageAttributeNames", "MaxNumberOfMessages", "VisibilityTimeout", "WaitTimeSeconds", "MessageBody",
          "DelaySeconds", "MessageAttributes", "ReceiptHandle", "Entries", "QueueNamePrefix", "MaxResults"]


def test_malformed_requests_get_sqs_errors_never_a_crash(sqs: tuple[SqsService, FakeClock]) -> None:
    service, _ = sqs
    rng = random.Random(3)
    for operation in [*service._ops, "NoSuchOperation"]:
        for _ in range(150):
            body = {"QueueUrl": URL, **{f: rng.choice(VALUES) for f in rng.sample(FIELDS, rng.randint(1, 6))}}
            if operation == "ReceiveMessage":
                body["WaitTimeSeconds"] = 0
            try:
                service.call(operation, body, BASE)
            except SqsError as err:
                assert err.status == 400 and err.headers["x-amzn-query-error"].endswith(";Sender")
    with pytest.raises(SqsError, match="JSON object"):
        service.call("SendMessage", ["not", "an", "object"], BASE)
