"""Message-level checks and renderings: bodies, message attributes, receipt handles, batch entries."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from chalicelib.localbatch.sqs.errors import SqsError, invalid, missing
from chalicelib.localbatch.sqs.storage import MessageRow

SENDER_ID = "AIDACONVEYORLOCAL"
SYSTEM_ATTRIBUTES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
                     "DeadLetterQueueSourceArn")
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# XML 1.0's characters, which SQS accepts in a body: tab, newline, carriage return, and from space up.
_BAD_CHARACTER = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_BATCH = 10


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def check_body(body: Any, limit: int) -> str:
    if not isinstance(body, str) or body == "":
        raise missing("MessageBody")
    if _BAD_CHARACTER.search(body):
        raise SqsError("InvalidMessageContents", "MessageBody: contains characters outside the allowed set")
    if len(body.encode("utf-8")) > limit:
        raise invalid(f"MessageBody: at most {limit} bytes")
    return body


def check_message_attributes(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 10:
        raise invalid("MessageAttributes: expected a map of at most 10 attributes")
    for name, value in raw.items():
        if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
            raise invalid(f"MessageAttributes.{name}: expected an object with DataType")
        base = value["DataType"].split(".", 1)[0]
        field = "BinaryValue" if base == "Binary" else "StringValue"
        if base not in ("String", "Number", "Binary") or not isinstance(value.get(field), str):
            raise invalid(f"MessageAttributes.{name}: DataType String, Number or Binary with its {field}")
    return raw


def wanted_attributes(attributes: dict[str, Any], names: Any) -> dict[str, Any]:
    """The message attributes a ReceiveMessage asked for: names, ``All``, ``.*`` or ``prefix.*``."""
    selected: dict[str, Any] = {}
    for pattern in names or ():
        for name, value in attributes.items():
            if pattern in ("All", ".*") or name == pattern or (
                    pattern.endswith(".*") and name.startswith(pattern[:-1])):
                selected[name] = value
    return selected


def system_attributes(row: MessageRow, names: set[str]) -> dict[str, str]:
    every = "All" in names
    values = {"SenderId": SENDER_ID, "SentTimestamp": str(row.sent_ms),
              "ApproximateReceiveCount": str(row.receives),
              "ApproximateFirstReceiveTimestamp": str(row.first_receive_ms or row.sent_ms), **row.system}
    return {name: value for name, value in values.items() if every or name in names}


def receipt_handle(row: MessageRow) -> str:
    return base64.urlsafe_b64encode(f"{row.id}:{row.receipt}".encode()).decode()


def parse_receipt(handle: Any) -> tuple[str, str]:
    if not isinstance(handle, str) or not handle:
        raise missing("ReceiptHandle")
    try:
        message_id, sep, token = base64.urlsafe_b64decode(handle.encode()).decode().partition(":")
    except (binascii.Error, ValueError):
        message_id, sep, token = "", "", ""
    if not sep or not message_id or not token:
        raise SqsError("ReceiptHandleIsInvalid", f"The input receipt handle {handle[:60]!r} is not a valid "
                       "receipt handle.")
    return message_id, token


def batch_entries(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise SqsError("EmptyBatchRequest", "There should be at least one entry in the request.")
    if len(raw) > MAX_BATCH:
        raise SqsError("TooManyEntriesInBatchRequest", f"Maximum number of entries per request are {MAX_BATCH}. "
                       f"You have sent {len(raw)}.")
    seen: set[str] = set()
    for entry in raw:
        entry_id = entry.get("Id") if isinstance(entry, dict) else None
        if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
            raise SqsError("InvalidBatchEntryId", f"A batch entry id must be 1 to 80 letters, digits, '-' or '_'; "
                           f"got {str(entry_id)[:40]!r}.")
        if entry_id in seen:
            raise SqsError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return raw


def failed_entry(entry_id: str, err: SqsError) -> dict[str, Any]:
    return {"Id": entry_id, "SenderFault": err.status < 500, "Code": err.code, "Message": err.message}
