"""DynamoDB item store: a stream run's per item and stage records on AWS (one item per record).

Key layout (table made by the stream stack): ``pk`` = run id, ``sk`` = ``<stage>#<item key>``.
Workers on many tasks write concurrently, so every write is conditional on the record it read
(optimistic locking on ``status`` and ``receives``); the forward-only rule itself is the core's
``moves_forward``, the same one the SQLite store applies.
"""

from __future__ import annotations

import time
from typing import Any

from chalicelib.pipeline.stream.records import ItemRecord, ItemStatus, moves_forward

# Records outlive their stream's activity by this much, then DynamoDB's TTL removes them.
RETENTION_S = 90 * 24 * 3600
_ATTEMPTS = 5


def _key(run_id: str, stage: str, key: str) -> dict[str, Any]:
    return {"pk": {"S": run_id}, "sk": {"S": f"{stage}#{key}"}}


def _to_item(record: ItemRecord, arrived: int | None) -> dict[str, Any]:
    item = {
        **_key(record.run_id, record.stage, record.key),
        "stage": {"S": record.stage}, "itemKey": {"S": record.key}, "status": {"S": record.status.value},
        "receives": {"N": str(record.receives)}, "reason": {"S": record.reason}, "worker": {"S": record.worker},
        "expiresAt": {"N": str(int(time.time()) + RETENTION_S)},
    }
    if arrived is not None:
        item["arrivedAt"] = {"N": str(arrived)}
    if record.updated_at is not None:
        item["updatedAt"] = {"N": str(record.updated_at)}
    return item


def _from_item(run_id: str, raw: dict[str, Any]) -> ItemRecord:
    def number(name: str) -> int | None:
        return int(raw[name]["N"]) if name in raw else None

    return ItemRecord(run_id=run_id, stage=raw["stage"]["S"], key=raw["itemKey"]["S"],
                      status=ItemStatus(raw["status"]["S"]), receives=int(raw["receives"]["N"]),
                      reason=raw.get("reason", {}).get("S", ""), arrived_at=number("arrivedAt"),
                      updated_at=number("updatedAt"), worker=raw.get("worker", {}).get("S", ""))


class DynamoItemStore:
    """The ItemStore port on one DynamoDB table; ``client`` is a boto3 DynamoDB client."""

    def __init__(self, table: str, *, client: Any) -> None:
        self.table = table
        self.db = client

    def put_item(self, record: ItemRecord) -> bool:
        key = _key(record.run_id, record.stage, record.key)
        for _ in range(_ATTEMPTS):
            current = self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
            if current is None:
                condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
                arrived = record.arrived_at
            else:
                existing = _from_item(record.run_id, current)
                if not moves_forward(existing, record):
                    return False
                condition = {
                    "ConditionExpression": "#s = :s AND receives = :r",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":s": {"S": existing.status.value},
                                                  ":r": {"N": str(existing.receives)}},
                }
                arrived = existing.arrived_at if existing.arrived_at is not None else record.arrived_at
            try:
                self.db.put_item(TableName=self.table, Item=_to_item(record, arrived), **condition)
                return True
            except self.db.exceptions.ConditionalCheckFailedException:
                continue  # another worker wrote first: read again and re-apply the rule
        return False

    def list_items(self, run_id: str, stage: str | None = None, limit: int = 1000) -> list[ItemRecord]:
        query: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": "pk = :p",
                                 "ExpressionAttributeValues": {":p": {"S": run_id}}}
        if stage is not None:
            query["KeyConditionExpression"] += " AND begins_with(sk, :s)"
            query["ExpressionAttributeValues"][":s"] = {"S": f"{stage}#"}
        records: list[ItemRecord] = []
        for page in self.db.get_paginator("query").paginate(**query):
            records.extend(_from_item(run_id, raw) for raw in page.get("Items", []))
            if len(records) >= limit:
                break
        records.sort(key=lambda r: r.updated_at or 0, reverse=True)
        return records[:limit]

    def count_items(self, run_id: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :p", ProjectionExpression="stage, #s",
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":p": {"S": run_id}})
        for page in pages:
            for raw in page.get("Items", []):
                stage_counts = counts.setdefault(raw["stage"]["S"], {})
                stage_counts[raw["status"]["S"]] = stage_counts.get(raw["status"]["S"], 0) + 1
        return counts
