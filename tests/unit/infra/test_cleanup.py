"""Cleanup turns whatever failed into the Fail state's error and a cause naming the stage and reason."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.aws.composition import AwsRuntime
from chalicelib.handlers import state_machine_tasks
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.pipeline.records import StageRecord, StageStatus
from chalicelib.settings import Settings


class _Unused:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"cleanup of an unknown run must not call {name}")


def _runtime(store: SqliteRunStore) -> AwsRuntime:
    return AwsRuntime(settings=Settings(), store=store, batch=_Unused(), sfn=_Unused(),  # type: ignore[arg-type]
                      publisher=_Unused(), s3=_Unused())  # type: ignore[arg-type]


def test_a_lambda_error_keeps_its_type_and_message() -> None:
    cause = json.dumps({"errorType": "InputError", "errorMessage": "$.items: 'ftp://x' does not match", "trace": []})
    answer = state_machine_tasks.cleanup(_runtime(SqliteRunStore(":memory:")), {
        "execution": "exec-1", "state": {"items": "ftp://x", "error": {"Error": "InputError", "Cause": cause}},
    })
    assert answer == {"error": "InputError", "cause": "$.items: 'ftp://x' does not match"}


def test_a_lost_cause_is_rebuilt_from_the_failed_stage() -> None:
    store = SqliteRunStore(":memory:")
    store.put_stage(StageRecord(run_id="r1", stage="align", status=StageStatus.FAILED, items=10,
                                counts={"SUCCEEDED": 7, "FAILED": 3}))
    answer = state_machine_tasks.cleanup(_runtime(store), {
        "execution": "r1", "state": {"run": {"runId": "r1"}, "error": {"Error": "StageFailed", "Cause": None}},
    })
    assert answer == {"error": "StageFailed", "cause": "stage align: 3 of 10 items failed"}
