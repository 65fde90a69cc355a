"""Trigger: one run per distinct delivery, deterministic run ids, S3 and EventBridge event shapes."""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.objectstores import open_store
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.trigger import (
    DeliveredObject,
    objects_from_event,
    run_id_for_object,
    start_run_for_object,
)


class RecordingStarter:
    def __init__(self) -> None:
        self.requests: list[RunRequest] = []

    def start_run(self, request: RunRequest) -> str:
        self.requests.append(request)
        return request.run_id


SPEC = {"name": "variant-calling", "stages": []}


def test_same_delivery_gives_the_same_run_id_and_a_new_version_another() -> None:
    one = DeliveredObject("s3://bucket", "inbox/batch 1.txt", "etag-1")
    assert run_id_for_object("variant-calling", one) == run_id_for_object("variant-calling", one)
    assert run_id_for_object("variant-calling", one) != run_id_for_object(
        "variant-calling", DeliveredObject("s3://bucket", "inbox/batch 1.txt", "etag-2"))
    run_id = run_id_for_object("variant.calling!", one)
    assert run_id.startswith("variant_calling_-t") and len(run_id) <= 80


def test_per_manifest_runs_over_the_delivered_manifest() -> None:
    starter = RecordingStarter()
    obj = DeliveredObject("s3://bucket", "inbox/m.json", "e1")
    run_id = start_run_for_object(starter, obj, spec=SPEC, runs_prefix="s3://bucket/runs")
    request = starter.requests[0]
    assert request.run_id == run_id
    assert request.items_source == "s3://bucket/inbox/m.json"
    assert request.prefix == f"s3://bucket/runs/{run_id}"
    assert request.source == "s3://bucket/inbox/m.json#e1"


def test_per_object_writes_a_one_item_manifest(tmp_path: Path) -> None:
    starter = RecordingStarter()
    spec = {**SPEC, "trigger": {"mode": "per_object"}}
    root = tmp_path.as_uri()
    obj = DeliveredObject(root, "drop/s1.fastq.gz", "e1")
    start_run_for_object(starter, obj, spec=spec, runs_prefix=f"{root}/runs", objects=open_store(root))
    manifest = json.loads(Path(starter.requests[0].items_source.removeprefix("file://")).read_text())
    assert manifest["items"] == [{"key": "s1", "files": [f"{root}/drop/s1.fastq.gz"]}]


def test_s3_notification_records_are_decoded_and_test_events_skipped() -> None:
    event = {"Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"},
         "object": {"key": "inbox/my+batch%3A1.txt", "eTag": "abc", "versionId": None}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "x"}}},
    ]}
    assert objects_from_event(event) == [DeliveredObject("s3://b", "inbox/my batch:1.txt", "abc")]
    assert objects_from_event({"Service": "Amazon S3", "Event": "s3:TestEvent"}) == []


def test_eventbridge_object_created_prefers_the_version_id() -> None:
    event = {"detail-type": "Object Created", "source": "aws.s3", "detail": {
        "bucket": {"name": "b"}, "object": {"key": "inbox/m.json", "etag": "e", "version-id": "v9"}}}
    assert objects_from_event(event) == [DeliveredObject("s3://b", "inbox/m.json", "v9")]
