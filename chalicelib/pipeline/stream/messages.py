"""StreamMessage: the body of one item's message for one stage (JSON), and its checked decoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.pipeline.model import Item

VERSION = 1


class BadMessage(ValueError):
    """A body that is not a stream message; the worker dead-letters it with this text as the reason."""


@dataclass(frozen=True)
class StreamMessage:
    """``prefix`` is the stream run's object-store prefix; ``arrived_ms`` when the item arrived (latency)."""

    run_id: str
    pipeline: str
    stage: str
    item: Item
    prefix: str
    arrived_ms: int

    def to_body(self) -> str:
        return json.dumps({"v": VERSION, "runId": self.run_id, "pipeline": self.pipeline, "stage": self.stage,
                           "item": self.item.to_dict(), "prefix": self.prefix, "arrivedAt": self.arrived_ms},
                          separators=(",", ":"))

    def for_stage(self, stage: str) -> StreamMessage:
        return StreamMessage(self.run_id, self.pipeline, stage, self.item, self.prefix, self.arrived_ms)

    @classmethod
    def from_body(cls, body: str) -> StreamMessage:
        try:
            raw = json.loads(body)
            if not isinstance(raw, dict) or raw.get("v") != VERSION:
                raise BadMessage(f"not a version {VERSION} stream message")
            item = Item.from_dict(raw["item"])
            return cls(run_id=_text(raw, "runId"), pipeline=_text(raw, "pipeline"), stage=_text(raw, "stage"),
                       item=item, prefix=_text(raw, "prefix"), arrived_ms=int(raw["arrivedAt"]))
        except BadMessage:
            raise
        except (ValueError, TypeError, KeyError) as err:
            raise BadMessage(f"unreadable stream message: {type(err).__name__}: {err}") from None


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value:
        raise BadMessage(f"unreadable stream message: {name} must be a non-empty string")
    return value
