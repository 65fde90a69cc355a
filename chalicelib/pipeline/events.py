"""Pipeline events: `Pipeline Run/Stage State Change` envelopes (source `conveyor`, EventBridge shape) and local publishers.

The envelopes are byte-compatible with what EventBridge delivers (``version``, ``id``,
``detail-type``, ``source``, ``account``, ``time``, ``region``, ``resources``, ``detail``), so
rules written for AWS (``{"source": ["conveyor"], "detail-type": [...]}``) match the local ones.
``detail`` keys are camelCase like Batch's, and always carry ``runId`` and ``status`` plus
``counts`` (items per Batch status).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from chalicelib.pipeline.records import RunRecord, StageRecord

SOURCE = "conveyor"
RUN_DETAIL_TYPE = "Pipeline Run State Change"
STAGE_DETAIL_TYPE = "Pipeline Stage State Change"
BATCH_DETAIL_TYPE = "Batch Job State Change"
DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"


def run_arn(run_id: str, *, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    """The resource name events give a run (Conveyor runs are not AWS resources)."""
    return f"arn:conveyor:{region}:{account}:run/{run_id}"


def to_envelope(
    detail_type: str,
    detail: dict[str, Any],
    resources: Sequence[str],
    *,
    now_ms: int,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
) -> dict[str, Any]:
    """Wraps ``detail`` in an EventBridge envelope with source ``conveyor``."""
    when = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": SOURCE,
        "account": account,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": list(resources),
        "detail": detail,
    }


def stage_event(run: RunRecord, stage: StageRecord, *, now_ms: int) -> dict[str, Any]:
    """`Pipeline Stage State Change` for one stage of a run."""
    detail = {
        "runId": run.run_id,
        "pipeline": run.pipeline,
        "stage": stage.stage,
        "status": stage.status.value,
        "items": stage.items,
        "counts": dict(stage.counts),
        "startedAt": stage.started_at,
        "endedAt": stage.ended_at,
        "deferred": stage.deferred,
    }
    return to_envelope(STAGE_DETAIL_TYPE, detail, [run_arn(run.run_id)], now_ms=now_ms)


def run_event(
    run: RunRecord, stages: Sequence[StageRecord], *, now_ms: int
) -> dict[str, Any]:
    """`Pipeline Run State Change`: the run's status, per-stage statuses and item counts."""
    totals: dict[str, int] = {}
    for stage in stages:
        for status, count in stage.counts.items():
            totals[status] = totals.get(status, 0) + count
    detail = {
        "runId": run.run_id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "items": run.items,
        "prefix": run.prefix,
        "createdAt": run.created_at,
        "endedAt": run.ended_at,
        "counts": totals,
        "stages": {s.stage: {"status": s.status.value, "counts": dict(s.counts)} for s in stages},
        "failures": list(run.failures),  # the first ones (run_end.bound_failures)
        "failureCount": max(run.failure_count, len(run.failures)),
    }
    return to_envelope(RUN_DETAIL_TYPE, detail, [run_arn(run.run_id)], now_ms=now_ms)


def is_batch_job_event(envelope: dict[str, Any]) -> bool:
    """True for an `aws.batch` `Batch Job State Change` envelope."""
    return (
        envelope.get("detail-type") == BATCH_DETAIL_TYPE
        and envelope.get("source") == "aws.batch"
        and isinstance(envelope.get("detail"), dict)
    )


class MemoryPublisher:
    """EventPublisher that keeps every envelope in order and calls subscribers (local runs, tests).

    ``sink`` (optional) receives each envelope too, e.g. an appender to a local event log.
    """

    def __init__(self, sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self.envelopes: list[dict[str, Any]] = []
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Calls ``callback(envelope)`` for each later envelope; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self.envelopes.extend(envelopes)
            subscribers = list(self._subscribers)
            if self._sink is not None:
                for envelope in envelopes:
                    self._sink(envelope)
        for envelope in envelopes:
            for callback in subscribers:
                callback(envelope)

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.envelopes if e["detail-type"] == detail_type]
