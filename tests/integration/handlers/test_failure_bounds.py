"""A 10,000-item array that fails entirely: the run record and the run event stay under the AWS limits.

moto enforces neither limit, so the test measures both itself: the run item as DynamoDB
stores it (attribute names plus values, UTF-8), and the PutEvents entry as EventBridge counts
it (Source, DetailType, Detail, Resources). The run is tracked on the SQLite store (10,000
item results through moto would take minutes); the run record it ends with is then written
by the DynamoDB store and measured as stored there, and the event goes through PutEvents.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import yaml
from moto import mock_aws

from chalicelib.aws.publisher import EventBridgePublisher
from chalicelib.aws.runstore import DynamoRunStore
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.objectstores import open_store
from chalicelib.pipeline.events import RUN_DETAIL_TYPE, MemoryPublisher
from chalicelib.pipeline.joins import manifest_join_items
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.run_end import FAILURES_KEPT, failed_run_cause
from chalicelib.pipeline.runs import RunPorts, start_run
from chalicelib.pipeline.tracker import Tracker
from tests.integration.handlers.aws_fixtures import create_run_table
from tests.unit.pipeline.batch_fake import FakeBatch

ITEMS = 10_000
DYNAMODB_ITEM_LIMIT = 400 * 1024
EVENTBRIDGE_ENTRY_LIMIT = 256 * 1024
SPEC = """
name: wide
stages:
  - name: a
    image: img
    command: [a, "{item}", "{out}"]
    foreach: item
"""


def _item_size(item: dict) -> int:
    """DynamoDB's item size: each attribute's name plus its value (strings in UTF-8, numbers ~ digits)."""
    size = 0
    for name, value in item.items():
        (kind, raw), = value.items()
        size += len(name.encode()) + (len(str(raw).encode()) if kind in ("S", "N") else len(json.dumps(raw)))
    return size


def _entry_size(envelope: dict) -> int:
    """EventBridge's PutEvents entry size: Source, DetailType, Detail and Resources, in UTF-8."""
    detail = json.dumps(envelope["detail"])
    return sum(len(s.encode()) for s in [envelope["source"], envelope["detail-type"], detail,
                                         *envelope["resources"]])


def test_a_wholly_failed_10000_item_array_keeps_record_and_event_under_the_limits(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    folder.mkdir()
    for i in range(ITEMS):
        (folder / f"sample-{i:05d}.txt").write_text("x")
    reason = "Essential container in task exited: " + "tool said: malformed input near line 1; " * 8
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamo = DynamoRunStore(create_run_table(dynamodb), client=dynamodb)
        store = SqliteRunStore(tmp_path / "runs.db")
        events = boto3.client("events", region_name="us-east-1")
        events.create_event_bus(Name="bus")
        publisher = MemoryPublisher(sink=lambda e: EventBridgePublisher("bus", client=events).publish([e]))
        batch = FakeBatch()
        ports = RunPorts(batch=batch, store=store, publisher=publisher, queues={"spot": "q"}, objects=open_store,
                         clock=lambda: 1000)
        start_run(ports, RunRequest(run_id="r1", spec=yaml.safe_load(SPEC), items_source=str(folder),
                                    prefix=(tmp_path / "runs" / "r1").as_uri(), base_dir=str(tmp_path)))
        jobs = store.list_jobs("r1")
        assert len(jobs) == 1 and jobs[0].size == ITEMS
        batch.child_status[jobs[0].job_id] = {i: ("FAILED", reason) for i in range(ITEMS)}
        tracker = Tracker(store=store, batch=batch, publisher=publisher,
                          join_items=manifest_join_items(open_store("file:///")), clock=lambda: 2000)
        detail = {"jobId": jobs[0].job_id, "status": "FAILED", "statusReason": "Array Child Job failed"}
        outcome = tracker.handle({"detail-type": "Batch Job State Change", "source": "aws.batch", "detail": detail})

        run = store.get_run("r1")
        assert outcome.run_finished and run.status.value == "FAILED"
        assert run.failure_count == ITEMS
        assert len(run.failures) == FAILURES_KEPT
        assert [f["item"] for f in run.failures[:3]] == [0, 1, 2]  # the first failures, in item order
        assert dynamo.create_run(run) and dynamo.get_run("r1") == run
        record_size = _item_size(dynamo._get("RUN#r1", "RUN"))
        run_events = publisher.of_type(RUN_DETAIL_TYPE)
        event_size = _entry_size(run_events[-1])
    print(f"\nrun record {record_size} bytes (limit {DYNAMODB_ITEM_LIMIT}), "
          f"run event {event_size} bytes (limit {EVENTBRIDGE_ENTRY_LIMIT}) for {ITEMS} failed items")
    assert record_size < DYNAMODB_ITEM_LIMIT
    assert event_size < EVENTBRIDGE_ENTRY_LIMIT
    assert run_events[-1]["detail"]["failureCount"] == ITEMS
    assert failed_run_cause(run).endswith(f"and {ITEMS - FAILURES_KEPT} more failures")
