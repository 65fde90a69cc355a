"""DynamoDB run store: runs, job-to-run map, stages, item results and wait tokens in one table.

Key layout (table ``pk``/``sk`` strings; the CDK storage construct creates it):

| item            | pk             | sk                      | extra attributes                 |
| --------------- | -------------- | ----------------------- | -------------------------------- |
| run             | ``RUN#<id>``   | ``RUN``                 | status, gsi1pk=RUNS, gsi1sk=time |
| job of a run    | ``RUN#<id>``   | ``JOB#<key>``           | lifecycle (status order)         |
| job -> run map  | ``JOB#<jobId>``| ``JOB``                 | runId, key                       |
| stage           | ``RUN#<id>``   | ``STAGE#<name>``        |                                  |
| item result     | ``RUN#<id>``   | ``ITEM#<stage>#<index>``| lifecycle                        |
| wait            | ``RUN#<id>``   | ``WAIT#<stage>``        | token, result                    |
| submission claim| ``RUN#<id>``   | ``CLAIM#<key>``         | expires (lease, epoch ms)        |

Records are kept as JSON in ``data``; only what conditions need is a top-level attribute.
Every write also sets ``expiresAt`` (epoch seconds, ``retention_days`` after the write): the
table's TTL attribute, so DynamoDB deletes a run's records some time after its last write.
The wait meeting uses one UpdateItem per half with ``ReturnValues=ALL_NEW``: DynamoDB
serialises writes to one item, so whichever half is written second sees both and resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.pipeline.records import (
    BATCH_STATUS_ORDER,
    ItemResult,
    JobRecord,
    RunRecord,
    RunStatus,
    StageRecord,
    StageStatus,
    WaitOutcome,
    advanced_job,
    updated_run,
)

RUNS_INDEX = "runs-by-created"
TTL_ATTRIBUTE = "expiresAt"  # the table's TimeToLiveSpecification (infra/constructs/storage.py)
DEFAULT_RETENTION_DAYS = 90
_TERMINAL_RUN = [RunStatus.SUCCEEDED.value, RunStatus.FAILED.value]


def _is_conditional_failure(err: ClientError) -> bool:
    return bool(err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _rank(status: str) -> int:
    return BATCH_STATUS_ORDER.get(status, -1)


class DynamoRunStore:
    """RunStore on a DynamoDB table (see ``ports.RunStore`` for the contract)."""

    def __init__(self, table_name: str, *, client: Any, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._table = table_name
        self._db = client
        self._retention_s = retention_days * 86400

    def _expires_at(self) -> dict[str, str]:
        return {"N": str(int(time.time()) + self._retention_s)}

    def close(self) -> None:
        """Nothing to release (boto3 clients pool their own connections); kept for parity with SQLite."""

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = self._db.get_item(TableName=self._table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
        found: dict[str, Any] | None = item.get("Item")
        return found

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":p": {"S": prefix}},
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _put(self, pk: str, sk: str, data: dict[str, Any], condition: str | None = None,
             values: dict[str, Any] | None = None, **extra: dict[str, Any]) -> bool:
        item = {"pk": {"S": pk}, "sk": {"S": sk}, "data": {"S": json.dumps(data)}, TTL_ATTRIBUTE: self._expires_at(),
                **extra}
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": item}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._db.put_item(**kwargs)
        except ClientError as err:
            if _is_conditional_failure(err):
                return False
            raise
        return True

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        return self._put(
            f"RUN#{run.run_id}", "RUN", _run_data(run), "attribute_not_exists(pk)",
            status={"S": run.status.value}, gsi1pk={"S": "RUNS"}, gsi1sk={"N": str(run.created_at)},
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        item = self._get(f"RUN#{run_id}", "RUN")
        return _to_run(item) if item else None

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        page = self._db.query(
            TableName=self._table, IndexName=RUNS_INDEX, KeyConditionExpression="gsi1pk = :k",
            ExpressionAttributeValues={":k": {"S": "RUNS"}}, ScanIndexForward=False, Limit=limit,
        )
        return [_to_run(item) for item in page.get("Items", [])]

    def update_run(self, run_id: str, *, status: RunStatus, ended_at: int | None = None,
                   failures: Sequence[dict[str, Any]] | None = None, failure_count: int | None = None) -> None:
        current = self.get_run(run_id)
        updated = updated_run(
            current, status=status, ended_at=ended_at, failures=failures, failure_count=failure_count,
        ) if current else None
        if updated is None:
            return
        # The rule is ``updated_run``'s; the condition keeps it when another writer ended the
        # run between the read and this write.
        condition = None if status.is_terminal else "NOT #s IN (:t1, :t2)"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}},
            "UpdateExpression": "SET #d = :d, #s = :s, #x = :x",
            "ExpressionAttributeNames": {"#d": "data", "#s": "status", "#x": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":d": {"S": json.dumps(_run_data(updated))}, ":s": {"S": status.value},
                                          ":x": self._expires_at()},
        }
        if condition:
            kwargs["ConditionExpression"] = condition
            kwargs["ExpressionAttributeValues"].update({":t1": {"S": _TERMINAL_RUN[0]}, ":t2": {"S": _TERMINAL_RUN[1]}})
        try:
            self._db.update_item(**kwargs)
        except ClientError as err:
            if not _is_conditional_failure(err):
                raise

    # -- jobs -----------------------------------------------------------------------------

    def put_job(self, job: JobRecord) -> None:
        self._put(f"RUN#{job.run_id}", f"JOB#{job.key}", asdict(job), lifecycle={"N": str(_rank(job.status))})
        self._put(f"JOB#{job.job_id}", "JOB", {"runId": job.run_id, "key": job.key})

    def get_job(self, run_id: str, key: str) -> JobRecord | None:
        item = self._get(f"RUN#{run_id}", f"JOB#{key}")
        return JobRecord(**json.loads(item["data"]["S"])) if item else None

    def find_job(self, job_id: str) -> JobRecord | None:
        ref = self._get(f"JOB#{job_id}", "JOB")
        if ref is None:
            return None
        data = json.loads(ref["data"]["S"])
        return self.get_job(data["runId"], data["key"])

    def list_jobs(self, run_id: str) -> list[JobRecord]:
        return [JobRecord(**json.loads(i["data"]["S"])) for i in self._query(f"RUN#{run_id}", "JOB#")]

    def advance_job(self, job_id: str, status: str, *, reason: str = "", started_at: int | None = None,
                    stopped_at: int | None = None) -> bool:
        job = self.find_job(job_id)
        moved = advanced_job(job, status, reason=reason, started_at=started_at, stopped_at=stopped_at) if job else None
        if job is None or moved is None:
            return False
        # ``advanced_job`` is the rule; the condition keeps it against a concurrent writer.
        return self._put(
            f"RUN#{job.run_id}", f"JOB#{job.key}", asdict(moved), "lifecycle < :r",
            {":r": {"N": str(_rank(status))}}, lifecycle={"N": str(_rank(status))},
        )

    def claim_submission(self, run_id: str, key: str, *, now_ms: int, lease_ms: int) -> bool:
        # A conditional write is the lock: ListJobs is eventually consistent, so two trackers
        # could each miss the other's job; only the writer whose put succeeds submits.
        return self._put(
            f"RUN#{run_id}", f"CLAIM#{key}", {"expires": now_ms + lease_ms},
            "attribute_not_exists(pk) OR expires <= :now", {":now": {"N": str(now_ms)}},
            expires={"N": str(now_ms + lease_ms)},
        )

    # -- stages and items -------------------------------------------------------------------

    def put_stage(self, stage: StageRecord) -> None:
        self._put(f"RUN#{stage.run_id}", f"STAGE#{stage.stage}", asdict(stage))

    def get_stage(self, run_id: str, stage: str) -> StageRecord | None:
        item = self._get(f"RUN#{run_id}", f"STAGE#{stage}")
        return _to_stage(item) if item else None

    def list_stages(self, run_id: str) -> list[StageRecord]:
        return [_to_stage(i) for i in self._query(f"RUN#{run_id}", "STAGE#")]

    def put_item_results(self, results: Sequence[ItemResult]) -> None:
        for res in results:
            self._put(
                f"RUN#{res.run_id}", f"ITEM#{res.stage}#{res.index:09d}", asdict(res),
                "attribute_not_exists(pk) OR lifecycle < :r", {":r": {"N": str(_rank(res.status))}},
                lifecycle={"N": str(_rank(res.status))},
            )

    def list_item_results(self, run_id: str, stage: str | None = None) -> list[ItemResult]:
        prefix = f"ITEM#{stage}#" if stage is not None else "ITEM#"
        return [ItemResult(**json.loads(i["data"]["S"])) for i in self._query(f"RUN#{run_id}", prefix)]

    # -- the wait meeting ---------------------------------------------------------------------

    def put_task_token(self, run_id: str, stage: str, token: str) -> WaitOutcome:
        return self._meet(run_id, stage, "token", {"S": token})

    def put_stage_result(self, run_id: str, stage: str, result: dict[str, Any]) -> WaitOutcome:
        return self._meet(run_id, stage, "result", {"S": json.dumps(result)})

    def _meet(self, run_id: str, stage: str, half: str, value: dict[str, str]) -> WaitOutcome:
        new = self._db.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": f"WAIT#{stage}"}},
            UpdateExpression="SET #h = :v, #x = :x",
            ExpressionAttributeNames={"#h": half, "#x": TTL_ATTRIBUTE},
            ExpressionAttributeValues={":v": value, ":x": self._expires_at()},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        if "token" not in new or "result" not in new:
            return WaitOutcome(completed=False)
        return WaitOutcome(completed=True, token=new["token"]["S"], result=json.loads(new["result"]["S"]))


def _run_data(run: RunRecord) -> dict[str, Any]:
    data = asdict(run)
    data["status"] = run.status.value
    data["failures"] = list(run.failures)
    return data


def _to_run(item: dict[str, Any]) -> RunRecord:
    data = json.loads(item["data"]["S"])
    data["status"] = RunStatus(data["status"])
    data["failures"] = tuple(data.get("failures", ()))
    return RunRecord(**data)


def _to_stage(item: dict[str, Any]) -> StageRecord:
    data = json.loads(item["data"]["S"])
    data["status"] = StageStatus(data["status"])
    return StageRecord(**data)
