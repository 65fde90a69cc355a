"""EventBridge publisher: PutEvents of Conveyor's envelopes onto the pipeline's custom bus."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.pipeline.errors import PipelineError

MAX_ENTRIES = 10  # PutEvents takes at most 10 entries per call


class PublishError(PipelineError):
    """EventBridge refused some entries after the call; names how many and the first error."""


class EventBridgePublisher:
    """EventPublisher onto one bus; ``source``, ``detail-type`` and ``detail`` come from the envelope."""

    def __init__(self, bus_name: str, *, client: Any) -> None:
        self._bus = bus_name
        self._events = client

    def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(envelopes), MAX_ENTRIES):
            entries = [
                {
                    "EventBusName": self._bus,
                    "Source": e["source"],
                    "DetailType": e["detail-type"],
                    "Detail": json.dumps(e["detail"]),
                    "Resources": list(e.get("resources", [])),
                }
                for e in envelopes[start : start + MAX_ENTRIES]
            ]
            answer = self._events.put_events(Entries=entries)
            if answer.get("FailedEntryCount"):
                failed = [r for r in answer.get("Entries", []) if r.get("ErrorCode")]
                first = failed[0] if failed else {}
                raise PublishError(
                    f"{answer['FailedEntryCount']} of {len(entries)} events refused by bus {self._bus}: "
                    f"{first.get('ErrorCode', '?')} {first.get('ErrorMessage', '')}"
                )
