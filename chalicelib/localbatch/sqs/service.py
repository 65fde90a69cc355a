"""SqsService: the SQS operations over SqsStorage, with long polling; one lock for every call.

ReceiveMessage with ``WaitTimeSeconds`` waits on a condition that SendMessage and a
visibility change to 0 notify, so a waiting consumer gets a new message at once. A queue
with a RedrivePolicy moves a message to its dead-letter queue when a receive would exceed
``maxReceiveCount`` (SQS's rule: the message was received that many times already).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.localbatch.api.validation import clean_text
from chalicelib.localbatch.clock import Clock, SystemClock
from chalicelib.localbatch.errors import ClientException
from chalicelib.localbatch.sqs import messages as msg
from chalicelib.localbatch.sqs import queues as q
from chalicelib.localbatch.sqs.errors import SqsError, invalid, missing, no_queue
from chalicelib.localbatch.sqs.storage import MessageRow, SqsStorage


def _int(body: dict[str, Any], name: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name}: expected a whole number from {low} to {high}, got {str(value)[:40]!r}")
    return value


def _names(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise invalid(f"{name}: expected a list of names")
    return value


class SqsService:
    def __init__(self, path: Any, clock: Clock | None = None) -> None:
        self.storage = SqsStorage(path)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._ops: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "CreateQueue": self._create_queue, "GetQueueUrl": self._get_queue_url,
            "DeleteQueue": self._delete_queue, "ListQueues": self._list_queues, "PurgeQueue": self._purge_queue,
            "GetQueueAttributes": self._get_attributes, "SetQueueAttributes": self._set_attributes,
            "SendMessage": self._send_message, "SendMessageBatch": self._send_batch,
            "ReceiveMessage": self._receive, "DeleteMessage": self._delete_message,
            "DeleteMessageBatch": self._delete_batch, "ChangeMessageVisibility": self._change_visibility,
            "ChangeMessageVisibilityBatch": self._change_visibility_batch,
        }

    def call(self, operation: str, body: Any, base_url: str) -> dict[str, Any]:
        handler = self._ops.get(operation)
        if handler is None:
            raise SqsError("UnsupportedOperation", f"{operation!r} is not an SQS operation the local engine serves")
        if not isinstance(body, dict):
            raise invalid("request body: expected a JSON object")
        try:  # the Batch side's rule: no lone surrogates (SQLite cannot store them), no absurd nesting
            clean_text(body)
        except ClientException as err:
            raise invalid(err.message) from None
        if operation == "ReceiveMessage":  # waits without holding the lock
            return handler(body, base_url)
        with self._lock:
            return handler(body, base_url)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            self.storage.close()

    # -- queues -------------------------------------------------------------------------------
    def _queue(self, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        name = q.name_from_url(body.get("QueueUrl"))
        found = self.storage.get_queue(name)
        if found is None:
            raise no_queue(name)
        return name, found["attributes"]

    def _create_queue(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name = q.check_name(body.get("QueueName"))
        attributes = q.checked_attributes(body.get("Attributes"))
        existing = self.storage.get_queue(name)
        if existing is not None:
            current = existing["attributes"]
            if any(current.get(k, str(q.NUMERIC[k][0]) if k in q.NUMERIC else "") != v for k, v in attributes.items()):
                raise SqsError("QueueNameExists", f"A queue named {name!r} exists with different attributes.")
        else:
            self.storage.put_queue(name, attributes, self.clock.now_ms())
        return {"QueueUrl": q.queue_url(base_url, name)}

    def _get_queue_url(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name = body.get("QueueName")
        if not isinstance(name, str) or not name:
            raise missing("QueueName")
        if self.storage.get_queue(name) is None:
            raise no_queue(name)
        return {"QueueUrl": q.queue_url(base_url, name)}

    def _delete_queue(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, _ = self._queue(body)
        self.storage.delete_queue(name)
        return {}

    def _list_queues(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        prefix = body.get("QueueNamePrefix") or ""
        if not isinstance(prefix, str):
            raise invalid("QueueNamePrefix: expected a string")
        limit = _int(body, "MaxResults", 1, 1000, 1000)
        names = [n for n in self.storage.queue_names() if n.startswith(prefix)][:limit]
        return {"QueueUrls": [q.queue_url(base_url, n) for n in names]}

    def _purge_queue(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, _ = self._queue(body)
        self.storage.purge(name)
        return {}

    def _get_attributes(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, attributes = self._queue(body)
        wanted = _names(body, "AttributeNames")
        unknown = [n for n in wanted if n != "All" and n not in q.SETTABLE | q.COMPUTED]
        if unknown:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {unknown[0]!r}.")
        meta = self.storage.get_queue(name) or {}
        counts = self.storage.counts(name, self.clock.now_ms())
        every = {**{k: str(v[0]) for k, v in q.NUMERIC.items()}, **attributes,
                 "QueueArn": q.queue_arn(name),
                 "ApproximateNumberOfMessages": str(counts["visible"]),
                 "ApproximateNumberOfMessagesNotVisible": str(counts["in_flight"]),
                 "ApproximateNumberOfMessagesDelayed": str(counts["delayed"]),
                 "CreatedTimestamp": str(meta.get("created_ms", 0) // 1000),
                 "LastModifiedTimestamp": str(meta.get("modified_ms", 0) // 1000)}
        chosen = {k: v for k, v in every.items() if ("All" in wanted or k in wanted) and v != ""}
        return {"Attributes": chosen} if chosen else {}

    def _set_attributes(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, attributes = self._queue(body)
        changes = q.checked_attributes(body.get("Attributes"))
        merged = {k: v for k, v in {**attributes, **changes}.items() if v != ""}
        self.storage.put_queue(name, merged, self.clock.now_ms())
        return {}

    # -- sending ------------------------------------------------------------------------------
    def _row(self, name: str, attributes: dict[str, str], entry: dict[str, Any]) -> MessageRow:
        body = msg.check_body(entry.get("MessageBody"), q.setting(attributes, "MaximumMessageSize"))
        delay = _int(entry, "DelaySeconds", 0, 900, q.setting(attributes, "DelaySeconds"))
        now = self.clock.now_ms()
        return MessageRow(id=str(uuid.uuid4()), queue=name, body=body,
                          attributes=msg.check_message_attributes(entry.get("MessageAttributes")), system={},
                          sent_ms=now, visible_ms=now + int(delay or 0) * 1000)

    @staticmethod
    def _sent(row: MessageRow) -> dict[str, Any]:
        return {"MessageId": row.id, "MD5OfMessageBody": msg.md5(row.body)}

    def _send_message(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, attributes = self._queue(body)
        row = self._row(name, attributes, body)
        self.storage.insert([row])
        self._changed.notify_all()
        return self._sent(row)

    def _send_batch(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, attributes = self._queue(body)
        rows, successful, failed = [], [], []
        for entry in msg.batch_entries(body.get("Entries")):
            try:
                row = self._row(name, attributes, entry)
            except SqsError as err:
                failed.append(msg.failed_entry(entry["Id"], err))
                continue
            rows.append(row)
            successful.append({"Id": entry["Id"], **self._sent(row)})
        self.storage.insert(rows)
        self._changed.notify_all()
        return {"Successful": successful, "Failed": failed}

    # -- receiving ----------------------------------------------------------------------------
    def _receive(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        limit = _int(body, "MaxNumberOfMessages", 1, 10, 1) or 1
        visibility = _int(body, "VisibilityTimeout", 0, 43_200, None)
        wait = _int(body, "WaitTimeSeconds", 0, 20, None)
        system_names = set(_names(body, "AttributeNames")) | set(_names(body, "MessageSystemAttributeNames"))
        attribute_names = _names(body, "MessageAttributeNames")
        with self._lock:
            name, attributes = self._queue(body)
            if wait is None:
                wait = q.setting(attributes, "ReceiveMessageWaitTimeSeconds")
            deadline = time.monotonic() + wait
            while True:
                rows = self._take(name, limit, visibility, attributes)
                remaining = deadline - time.monotonic()
                if rows or remaining <= 0 or self._closed:
                    break
                self._changed.wait(self._pause(name, remaining))
                name, attributes = self._queue(body)  # it may have been deleted or changed meanwhile
        found = [self._render(row, system_names, attribute_names) for row in rows]
        return {"Messages": found} if found else {}

    def _pause(self, name: str, remaining: float) -> float:
        """How long to sleep: until the deadline, or until a message in flight becomes visible again."""
        due = self.storage.next_visible_ms(name)
        if due is None:
            return remaining
        return min(remaining, max(0.005, (due - self.clock.now_ms()) / 1000))

    def _take(self, name: str, limit: int, visibility: int | None,
              attributes: dict[str, str]) -> list[MessageRow]:
        now = self.clock.now_ms()
        hidden_for = q.setting(attributes, "VisibilityTimeout") if visibility is None else visibility
        policy = attributes.get("RedrivePolicy")
        redrive = q.redrive_policy(policy) if policy else None
        if redrive is not None and self.storage.get_queue(redrive.target) is None:
            redrive = None  # a missing dead-letter queue: SQS keeps delivering
        taken, changed = [], []
        with self.storage.transaction():
            self.storage.expire(name, now - q.setting(attributes, "MessageRetentionPeriod") * 1000)
            for row in self.storage.visible(name, now, limit):
                if redrive is not None and row.receives >= redrive.max_receives:
                    row.system["DeadLetterQueueSourceArn"] = q.queue_arn(name)
                    row.queue, row.receives, row.first_receive_ms, row.receipt = redrive.target, 0, None, None
                    row.visible_ms = now
                else:
                    row.receives += 1
                    row.first_receive_ms = row.first_receive_ms or now
                    row.receipt = uuid.uuid4().hex
                    row.visible_ms = now + hidden_for * 1000
                    taken.append(row)
                changed.append(row)
            self.storage.update(changed)
        if len(changed) > len(taken):
            self._changed.notify_all()  # consumers of the dead-letter queue
        return taken

    @staticmethod
    def _render(row: MessageRow, system_names: set[str], attribute_names: Any) -> dict[str, Any]:
        rendered: dict[str, Any] = {"MessageId": row.id, "ReceiptHandle": msg.receipt_handle(row),
                                    "MD5OfBody": msg.md5(row.body), "Body": row.body}
        system = msg.system_attributes(row, system_names)
        if system:
            rendered["Attributes"] = system
        chosen = msg.wanted_attributes(row.attributes, attribute_names)
        if chosen:
            rendered["MessageAttributes"] = chosen
        return rendered

    # -- deleting and visibility --------------------------------------------------------------
    def _delete_one(self, name: str, handle: Any) -> None:
        message_id, token = msg.parse_receipt(handle)
        row = self.storage.get(message_id)
        # A handle from an older receive deletes nothing (the message was handed out again).
        if row is not None and row.queue == name and row.receipt == token:
            self.storage.delete([message_id])

    def _delete_message(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, _ = self._queue(body)
        self._delete_one(name, body.get("ReceiptHandle"))
        return {}

    def _delete_batch(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, _ = self._queue(body)
        return self._each(body, lambda entry: self._delete_one(name, entry.get("ReceiptHandle")))

    def _change_one(self, name: str, handle: Any, seconds: Any) -> None:
        seconds = _int({"VisibilityTimeout": seconds}, "VisibilityTimeout", 0, 43_200, None)
        if seconds is None:
            raise missing("VisibilityTimeout")
        message_id, token = msg.parse_receipt(handle)
        row = self.storage.get(message_id)
        now = self.clock.now_ms()
        if row is None or row.queue != name or row.receipt != token or row.visible_ms <= now:
            raise SqsError("MessageNotInflight", "The message referred to is not in flight.")
        row.visible_ms = now + seconds * 1000
        self.storage.update([row])
        if seconds == 0:
            self._changed.notify_all()

    def _change_visibility(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, _ = self._queue(body)
        self._change_one(name, body.get("ReceiptHandle"), body.get("VisibilityTimeout"))
        return {}

    def _change_visibility_batch(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        name, _ = self._queue(body)
        return self._each(body, lambda e: self._change_one(name, e.get("ReceiptHandle"), e.get("VisibilityTimeout")))

    @staticmethod
    def _each(body: dict[str, Any], apply: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        successful, failed = [], []
        for entry in msg.batch_entries(body.get("Entries")):
            try:
                apply(entry)
            except SqsError as err:
                failed.append(msg.failed_entry(entry["Id"], err))
                continue
            successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}
