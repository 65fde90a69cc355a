"""Queue names, URLs, ARNs and attributes: defaults, checks and the redrive policy.

Attribute values travel as strings, as in SQS. Only standard queues exist here; a ``.fifo``
name is refused with a clear message rather than served with the wrong semantics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.localbatch.sqs.errors import SqsError, invalid

ACCOUNT = "000000000000"
REGION = "us-east-1"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# name -> (default, lowest, highest); every settable numeric attribute
NUMERIC = {
    "VisibilityTimeout": (30, 0, 43_200),
    "DelaySeconds": (0, 0, 900),
    "MessageRetentionPeriod": (345_600, 60, 1_209_600),
    "MaximumMessageSize": (262_144, 1_024, 262_144),
    "ReceiveMessageWaitTimeSeconds": (0, 0, 20),
}
SETTABLE = set(NUMERIC) | {"RedrivePolicy", "Policy", "KmsMasterKeyId", "SqsManagedSseEnabled"}
COMPUTED = {"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp"}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise SqsError("MissingParameter", "The request must contain the parameter QueueName.")
    if name.endswith(".fifo"):
        raise invalid(f"QueueName {name!r}: FIFO queues are not supported by the local engine")
    if not _NAME.match(name):
        raise invalid(f"QueueName {name[:100]!r}: expected 1 to 80 letters, digits, '-' or '_'")
    return name


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def queue_url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{ACCOUNT}/{name}"


def name_from_url(url: Any) -> str:
    """The queue name is the URL's last path segment (any host: clients may rewrite it)."""
    if not isinstance(url, str) or not url:
        raise SqsError("MissingParameter", "The request must contain the parameter QueueUrl.")
    return url.rstrip("/").rsplit("/", 1)[-1]


def name_from_arn(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[5] if len(parts) == 6 and parts[:3] == ["arn", "aws", "sqs"] else None


def checked_attributes(raw: Any) -> dict[str, str]:
    """The attributes a caller sets, checked; raises InvalidAttributeName/Value naming the culprit."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid("Attributes: expected a map of attribute names to string values")
    checked: dict[str, str] = {}
    for name, value in raw.items():
        if name not in SETTABLE:
            raise SqsError("InvalidAttributeName", f"Unknown or read-only attribute {name!r}.")
        if not isinstance(value, str):
            raise SqsError("InvalidAttributeValue", f"{name}: expected a string value")
        if name in NUMERIC:
            _, low, high = NUMERIC[name]
            if not value.strip().isdigit() or not low <= int(value) <= high:
                raise SqsError("InvalidAttributeValue",
                               f"Invalid value for the parameter {name}: expected {low} to {high}, got {value[:40]!r}")
            value = str(int(value))
        if name == "RedrivePolicy" and value:
            redrive_policy(value)
        checked[name] = value
    return checked


@dataclass(frozen=True)
class Redrive:
    target: str  # the dead-letter queue's name
    max_receives: int


def redrive_policy(value: str) -> Redrive:
    try:
        policy = json.loads(value)
        arn, count = policy["deadLetterTargetArn"], int(policy["maxReceiveCount"])
    except (ValueError, TypeError, KeyError):
        raise SqsError("InvalidAttributeValue", "RedrivePolicy: expected JSON with deadLetterTargetArn and "
                       f"maxReceiveCount, got {value[:80]!r}") from None
    target = name_from_arn(str(arn))
    if target is None:
        raise SqsError("InvalidAttributeValue", f"RedrivePolicy: deadLetterTargetArn {arn!r} is not an SQS queue ARN")
    if not 1 <= count <= 1000:
        raise SqsError("InvalidAttributeValue", f"RedrivePolicy: maxReceiveCount must be 1 to 1000, got {count}")
    return Redrive(target, count)


def setting(attributes: dict[str, str], name: str) -> int:
    return int(attributes.get(name, NUMERIC[name][0]))
