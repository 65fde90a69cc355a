"""Per item and stage records of a stream run, their store port, and `Pipeline Item State Change` events.

A stream is one long-lived run; each item gets one record per stage (never a growing list
inside the run record). States move forward only: QUEUED < RUNNING < RETRYING < terminal, except
that a retried item goes RUNNING again (receive count grows), so the rule is on ``receives``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from chalicelib.pipeline.events import run_arn, to_envelope

ITEM_DETAIL_TYPE = "Pipeline Item State Change"


class ItemStatus(str, Enum):
    QUEUED = "QUEUED"  # its message for this stage was sent
    RUNNING = "RUNNING"  # a worker received it and runs the tool
    RETRYING = "RETRYING"  # that try failed; the message comes back after a backoff
    SUCCEEDED = "SUCCEEDED"  # outputs published, downstream messages sent, message deleted
    DEAD_LETTERED = "DEAD_LETTERED"  # sent to the stage's dead-letter queue with the reason

    @property
    def is_terminal(self) -> bool:
        return self in (ItemStatus.SUCCEEDED, ItemStatus.DEAD_LETTERED)


@dataclass(frozen=True)
class ItemRecord:
    """One item in one stage of a stream run. Times are epoch ms; ``worker`` names who ran it."""

    run_id: str
    stage: str
    key: str
    status: ItemStatus
    receives: int = 0
    reason: str = ""
    arrived_at: int | None = None
    updated_at: int | None = None
    worker: str = ""


_RANK = {ItemStatus.QUEUED: 0, ItemStatus.RUNNING: 1, ItemStatus.RETRYING: 2}


def moves_forward(current: ItemRecord, new: ItemRecord) -> bool:
    """The one rule both item stores apply: a finished record stays; otherwise a write wins when it
    is terminal or comes from a later receive (or a later state of the same receive)."""
    if current.status.is_terminal:
        return False
    if new.status.is_terminal:
        return True
    return (new.receives, _RANK[new.status]) > (current.receives, _RANK[current.status])


class ItemStore(Protocol):
    """Durable per item and stage state (SQLite locally; a DynamoDB table on AWS later)."""

    def put_item(self, record: ItemRecord) -> bool:
        """Upserts; False (and no change) when it would move a finished record back or to an older receive."""
        ...

    def list_items(self, run_id: str, stage: str | None = None, limit: int = 1000) -> list[ItemRecord]: ...

    def count_items(self, run_id: str) -> dict[str, dict[str, int]]:
        """stage -> status -> count."""
        ...


def item_event(record: ItemRecord, pipeline: str, *, now_ms: int) -> dict[str, Any]:
    detail = {
        "runId": record.run_id,
        "pipeline": pipeline,
        "stage": record.stage,
        "item": record.key,
        "status": record.status.value,
        "receiveCount": record.receives,
        "reason": record.reason,
        "arrivedAt": record.arrived_at,
        "latencyMs": (now_ms - record.arrived_at) if record.arrived_at and record.status.is_terminal else None,
        "worker": record.worker,
    }
    return to_envelope(ITEM_DETAIL_TYPE, detail, [run_arn(record.run_id)], now_ms=now_ms)


class Publisher(Protocol):
    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None: ...
