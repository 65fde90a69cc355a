"""The stream worker loop: receive one message, run its item's stage, pass it on, delete it.

Runs the same on the local fleet and (later) on ECS: ``sqs`` is any object with boto3's SQS
client methods, ``process`` runs the runner for one item. At-least-once: a message is deleted
only after its outputs are published and its downstream messages are sent, so a worker that
dies mid-item loses nothing (the message comes back after the visibility timeout) and the
runner's publish-once check makes the repeat harmless. While an item runs, a heartbeat keeps
the message hidden. ``request_stop`` (SIGTERM): stop receiving, let the item finish within the
grace period, else cancel it and return the message at once (visibility 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.pipeline.stream.messages import BadMessage, StreamMessage
from chalicelib.pipeline.stream.poison import Verdict, on_failure
from chalicelib.pipeline.stream.records import ItemRecord, ItemStatus, ItemStore, Publisher, item_event
from chalicelib.pipeline.stream.settings import StreamSettings


@dataclass(frozen=True)
class Outcome:
    """What processing one item came to; ``cancelled``: stopped by shutdown, return the message."""

    ok: bool
    reason: str = ""
    cancelled: bool = False


Processor = Callable[[StreamMessage, threading.Event], Outcome]


@dataclass(frozen=True)
class StageQueues:
    url: str
    dead_letter_url: str
    downstream: Mapping[str, str]  # downstream stage -> its queue URL


def epoch_ms() -> int:
    return time.time_ns() // 1_000_000


class StreamWorker:
    def __init__(self, sqs: Any, stage: str, settings: StreamSettings, queues: StageQueues, process: Processor,
                 items: ItemStore, publisher: Publisher, *, worker_id: str, wait_seconds: int = 1,
                 grace_seconds: float = 10.0, clock: Callable[[], int] = epoch_ms,
                 on_state: Callable[[str], None] | None = None,
                 decode: Callable[[str], StreamMessage] = StreamMessage.from_body) -> None:
        self.sqs, self.stage, self.settings, self.queues = sqs, stage, settings, queues
        self.process, self.items, self.publisher = process, items, publisher
        self.worker_id, self.wait_seconds, self.grace_seconds, self.clock = worker_id, wait_seconds, grace_seconds, clock
        self.on_state = on_state or (lambda state: None)
        self.decode = decode  # entry stages on AWS also accept S3 arrivals (stream/arrivals.py)
        self.stopping = threading.Event()
        self.cancel = threading.Event()
        self.handled = 0

    # -- life cycle -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop receiving; an item still running after the grace period is cancelled and returned."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        timer = threading.Timer(self.grace_seconds, self.cancel.set)
        timer.daemon = True
        timer.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.run_once()
        self.on_state("stopped")

    def run_once(self) -> bool:
        """One receive (long poll) and its message, if any; True when a message was handled."""
        self.on_state("idle")
        found = self.sqs.receive_message(
            QueueUrl=self.queues.url, MaxNumberOfMessages=1, WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.settings.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        if not found:
            return False
        message = found[0]
        if self.stopping.is_set():  # received while stopping: hand it straight back
            self._return(message)
            return False
        self.on_state("busy")
        try:
            self._handle(message)
        finally:
            self.handled += 1
        return True

    # -- one message ----------------------------------------------------------------------------
    def _handle(self, message: dict[str, Any]) -> None:
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            parsed = self.decode(message["Body"])
        except BadMessage as err:
            self._dead_letter(message, None, receives, str(err))
            return
        self._record(parsed, ItemStatus.RUNNING, receives)
        with self._heartbeat(message):
            outcome = self.process(parsed, self.cancel)
        if outcome.cancelled:
            self._return(message)
            self._record(parsed, ItemStatus.RETRYING, receives, "returned by a stopping worker")
        elif outcome.ok:
            self._pass_on(parsed)
            self._record(parsed, ItemStatus.SUCCEEDED, receives)
            self.sqs.delete_message(QueueUrl=self.queues.url, ReceiptHandle=message["ReceiptHandle"])
        else:
            decision = on_failure(receives, self.settings.max_receives, outcome.reason)
            if decision.verdict is Verdict.DEAD_LETTER:
                self._dead_letter(message, parsed, receives, decision.reason)
            else:
                self._record(parsed, ItemStatus.RETRYING, receives, decision.reason)
                self._change_visibility(message, decision.retry_after)

    def _pass_on(self, parsed: StreamMessage) -> None:
        for stage, url in self.queues.downstream.items():
            self.sqs.send_message(QueueUrl=url, MessageBody=parsed.for_stage(stage).to_body())
            self._record(parsed.for_stage(stage), ItemStatus.QUEUED, 0)

    def _dead_letter(self, message: dict[str, Any], parsed: StreamMessage | None, receives: int, reason: str) -> None:
        attributes = {"reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
                      "stage": {"DataType": "String", "StringValue": self.stage},
                      "receives": {"DataType": "Number", "StringValue": str(receives)}}
        self.sqs.send_message(QueueUrl=self.queues.dead_letter_url, MessageBody=message["Body"],
                              MessageAttributes=attributes)
        if parsed is not None:
            self._record(parsed, ItemStatus.DEAD_LETTERED, receives, reason)
        self.sqs.delete_message(QueueUrl=self.queues.url, ReceiptHandle=message["ReceiptHandle"])

    def _return(self, message: dict[str, Any]) -> None:
        self._change_visibility(message, 0)

    def _change_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queues.url, ReceiptHandle=message["ReceiptHandle"],
                                               VisibilityTimeout=seconds)
        except Exception as err:  # not in flight any more: it is visible already, which is what we want
            if "MessageNotInflight" not in f"{type(err).__name__} {err}":
                raise

    def _record(self, parsed: StreamMessage, status: ItemStatus, receives: int, reason: str = "") -> None:
        now = self.clock()
        record = ItemRecord(run_id=parsed.run_id, stage=parsed.stage, key=parsed.item.key, status=status,
                            receives=receives, reason=reason, arrived_at=parsed.arrived_ms, updated_at=now,
                            worker=self.worker_id)
        if self.items.put_item(record):
            self.publisher.publish([item_event(record, parsed.pipeline, now_ms=now)])

    def _heartbeat(self, message: dict[str, Any]) -> _Heartbeat:
        return _Heartbeat(lambda: self._change_visibility(message, self.settings.visibility_timeout),
                          max(1.0, self.settings.visibility_timeout / 2))


class _Heartbeat:
    """Extends the message's visibility every ``every`` seconds while an item runs."""

    def __init__(self, extend: Callable[[], None], every: float) -> None:
        self.extend, self.every = extend, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="stream-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.extend()
            except Exception:  # a missed beat only risks a duplicate delivery, which is harmless
                pass
