"""The core worker loop over boto3's SQS client against the engine, with an in-process tool (no fleet)."""

from __future__ import annotations

import threading
import time
from typing import Any

from chalicelib.local.stream import LocalStream
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.stream.messages import StreamMessage
from chalicelib.pipeline.stream.worker import Outcome, StreamWorker
from tests.integration.stream.conftest import StreamEnv, status_of, stream_spec


def worker(stream: LocalStream, stage: str, process: Any, **kwargs: Any) -> StreamWorker:
    return StreamWorker(stream.sqs, stage, stream.spec.settings[stage], stream.queues[stage], process,
                        stream.items, stream.publisher, worker_id=f"test-{stage}", wait_seconds=0, **kwargs)


def ok(message: StreamMessage, cancel: threading.Event) -> Outcome:
    return Outcome(ok=not message.item.key.startswith("poison"), reason="tool exited 3: cannot decode")


def test_success_passes_the_item_on_and_failure_dead_letters_with_its_reason(stream_env: StreamEnv) -> None:
    stream = stream_env.open(stream_spec(stream_env.marks, max_receives=2))
    for key in ("good", "poison", "also-good"):
        stream.submit(Item(key, (f"file:///nowhere/{key}",)))
    a = worker(stream, "a", ok)
    deadline = time.monotonic() + 30
    while a.handled < 4 and time.monotonic() < deadline:  # three items, the poison one twice (after a 1 s backoff)
        a.run_once()
    assert status_of(stream, "a", "good").status.value == "SUCCEEDED"
    assert status_of(stream, "b", "good").status.value == "QUEUED"  # passed on at once, not after the others
    poisoned = status_of(stream, "a", "poison")
    assert (poisoned.status.value, poisoned.receives) == ("DEAD_LETTERED", 2)
    assert "cannot decode" in poisoned.reason
    dead = stream.sqs.receive_message(QueueUrl=stream.queues["a"].dead_letter_url, MessageAttributeNames=["All"],
                                      WaitTimeSeconds=1)["Messages"]
    assert StreamMessage.from_body(dead[0]["Body"]).item.key == "poison"
    assert "cannot decode" in dead[0]["MessageAttributes"]["reason"]["StringValue"]
    assert stream.backlog("a").total == 0
    assert stream.backlog("b").visible == 2
    events = [e["detail"] for e in stream.publisher.of_type("Pipeline Item State Change")]
    assert {(e["stage"], e["item"], e["status"]) for e in events} >= {
        ("a", "good", "SUCCEEDED"), ("a", "poison", "DEAD_LETTERED"), ("b", "good", "QUEUED")}
    assert all(e["latencyMs"] is not None for e in events if e["status"] == "SUCCEEDED")


def test_unreadable_message_is_dead_lettered_at_once(stream_env: StreamEnv) -> None:
    stream = stream_env.open(stream_spec(stream_env.marks, stages=1))
    stream.sqs.send_message(QueueUrl=stream.queues["a"].url, MessageBody="not json")
    assert worker(stream, "a", ok).run_once()
    dead = stream.sqs.receive_message(QueueUrl=stream.queues["a"].dead_letter_url, MessageAttributeNames=["All"],
                                      WaitTimeSeconds=1)["Messages"]
    assert "unreadable stream message" in dead[0]["MessageAttributes"]["reason"]["StringValue"]


def test_stop_past_the_grace_period_returns_the_message_at_once(stream_env: StreamEnv) -> None:
    stream = stream_env.open(stream_spec(stream_env.marks, stages=1, visibility_timeout=300))
    stream.submit(Item("slow", ("file:///nowhere/slow",)))
    started = threading.Event()

    def slow(message: StreamMessage, cancel: threading.Event) -> Outcome:
        started.set()
        cancel.wait(30)
        return Outcome(ok=False, cancelled=cancel.is_set())

    w = worker(stream, "a", slow, grace_seconds=0.2)
    thread = threading.Thread(target=w.run)
    thread.start()
    assert started.wait(20)
    w.request_stop()
    thread.join(20)
    assert not thread.is_alive()
    # Visible again now, not after the 300 s visibility timeout.
    again = stream.sqs.receive_message(QueueUrl=stream.queues["a"].url, WaitTimeSeconds=2)["Messages"]
    assert StreamMessage.from_body(again[0]["Body"]).item.key == "slow"
    assert status_of(stream, "a", "slow").reason == "returned by a stopping worker"
