"""Arrivals on AWS: an S3 ``Object Created`` event (EventBridge, SQS target) -> the item's stream message.

On AWS an upload under the stream's inbox reaches the entry stages' queues straight from an
EventBridge rule, so the body a worker receives there is the EventBridge envelope, not a
stream message. The item is the object: its key is the file name without its extension (as
the local inbox does), its one file the object's ``s3://`` URI, and its arrival time the
event's ``time``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.pipeline.model import Item
from chalicelib.pipeline.stream.messages import BadMessage, StreamMessage

OBJECT_CREATED = "Object Created"


def is_object_created(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("source") == "aws.s3" and raw.get("detail-type") == OBJECT_CREATED


def message_from_object_created(raw: dict[str, Any], *, run_id: str, pipeline: str, stage: str,
                                prefix: str) -> StreamMessage:
    """The stream message for one uploaded object, bound for ``stage``.

    Raises:
        BadMessage: the event lacks the bucket, the key or a readable time.
    """
    detail = raw.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    key = (detail.get("object") or {}).get("key")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise BadMessage("S3 Object Created event without detail.bucket.name and detail.object.key")
    try:
        arrived = int(datetime.fromisoformat(str(raw.get("time", "")).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise BadMessage(f"S3 Object Created event with an unreadable time {raw.get('time')!r}") from None
    stem = posixpath.splitext(posixpath.basename(key))[0]
    if not stem:
        raise BadMessage(f"object key {key!r} names no file")
    return StreamMessage(run_id=run_id, pipeline=pipeline, stage=stage,
                         item=Item(key=stem, files=(f"s3://{bucket}/{key}",)), prefix=prefix, arrived_ms=arrived)


def decoder_for_entry_stage(*, run_id: str, pipeline: str, stage: str,
                            prefix: str) -> Callable[[str], StreamMessage]:
    """A body decoder for an entry stage's queue: stream messages as usual, S3 arrivals converted."""

    def decode(body: str) -> StreamMessage:
        try:
            raw = json.loads(body)
        except ValueError:
            raw = None
        if is_object_created(raw):
            return message_from_object_created(raw, run_id=run_id, pipeline=pipeline, stage=stage, prefix=prefix)
        return StreamMessage.from_body(body)

    return decode
