"""Fuzzing the engine's SQS API from botocore's SQS service model, as the Batch side is fuzzed.

The engine serves SQS on the Batch API's port (`X-Amz-Target: AmazonSQS.<Operation>`, JSON 1.0),
under the same request rule. Every operation of the model, every member: mostly well-typed
values (with the real queue's URL half the time, so deeper checks are reached) and hostile
leaves, truncated, non-UTF-8 and garbage bodies. After each case: no 5xx, a JSON error naming its
type, no ERROR log line and no watchdog failure; after each operation the queue still takes and
gives a message through boto3.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.localbatch.access import signed_headers
from tests.helpers import http_request
from tests.integration.localbatch import fuzz_model as fm
from tests.integration.localbatch.conftest import LiveEngine, start_live, stop_live

pytestmark = pytest.mark.slow
MODEL = botocore.session.get_session().get_service_model("sqs")
OPERATIONS = sorted(MODEL.operation_names)
FUZZ = settings(max_examples=fm.EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveEngine, Any, str]]:
    live = start_live(Path(tmp_path_factory.mktemp("fuzz-sqs")))
    sqs = boto3.client("sqs", endpoint_url=live.url, region_name="us-east-1",
                       aws_access_key_id="local", aws_secret_access_key="local")
    url = sqs.create_queue(QueueName="fuzzed")["QueueUrl"]
    yield live, sqs, url
    stop_live(live)


@st.composite
def sqs_request(draw: Any, operation: str, queue_url: str) -> bytes:
    shape = MODEL.operation_model(operation).input_shape
    body: Any = draw(fm.typed(shape, "", 0)) if shape is not None else {}
    if isinstance(body, dict) and "QueueUrl" in body and draw(st.booleans()):
        body["QueueUrl"] = queue_url
    if draw(st.integers(0, 9)) == 0:
        body = draw(fm.hostile_leaf())  # not even an object
    return fm.damaged(draw, fm.encode(body))


def post(url: str, operation: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    headers = {**signed_headers("POST", url + "/", raw), "X-Amz-Target": f"AmazonSQS.{operation}",
               "Content-Type": "application/x-amz-json-1.0"}
    return http_request(url + "/", raw, "POST", headers, sign=False)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_sqs_operation_survives_hostile_input(target: tuple[LiveEngine, Any, str], operation: str,
                                                    caplog: pytest.LogCaptureFixture,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    live, sqs, queue_url = target

    @FUZZ
    @given(raw=sqs_request(operation, queue_url))
    def one(raw: bytes) -> None:
        status, _, body = post(live.url, operation, raw)
        assert status < 500, (operation, raw[:200], status, body[:300])
        if body:
            reply = json.loads(body)
            if status >= 400:
                assert isinstance(reply.get("__type"), str) and reply["__type"], reply
                assert isinstance(reply.get("message", reply.get("Message")), str), reply
        problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not problems, (operation, [r.getMessage() for r in problems][:3])
        assert live.engine.failure is None, live.engine.failure

    with caplog.at_level(logging.WARNING, logger="chalicelib"):
        one()
    # The queue still works for a well-behaved client (a fuzz case may have purged or deleted it).
    url = sqs.create_queue(QueueName="after-fuzz")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="still here")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert got and got[0]["Body"] == "still here"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert "Traceback" not in capfd.readouterr().err


def test_unsigned_sqs_requests_are_refused(target: tuple[LiveEngine, Any, str]) -> None:
    live, _, queue_url = target
    body = json.dumps({"QueueUrl": queue_url, "MessageBody": "x"}).encode()
    status, _, reply = http_request(live.url + "/", body, "POST", {
        "X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "text/plain"}, sign=False)
    assert status == 403 and b"AccessDenied" in reply
