"""Local stream runs: the queues on the engine's SQS, the long-lived run record, item arrival, a snapshot.

    stream = LocalStream.open(spec_path, endpoint_url, data_dir)   # creates queues and the run
    stream.submit_file(path)                                         # one item, to the entry stages
    stream.snapshot(fleet)                                           # queue depths, workers, items

The run id is ``<pipeline>-stream``: restarting `conveyor serve` continues the same stream
(its queues and records are durable).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib import aws_clients
from chalicelib.local.item_store import SqliteItemStore
from chalicelib.local.runstore import SqliteRunStore
from chalicelib.local.runtime import EVENTS_LOG, RUNS_DB, event_log_appender
from chalicelib.pipeline.events import MemoryPublisher
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.records import RunRecord, RunStatus
from chalicelib.pipeline.spec import parse_document
from chalicelib.pipeline.stream.messages import StreamMessage
from chalicelib.pipeline.stream.records import ItemRecord, ItemStatus, item_event
from chalicelib.pipeline.stream.scaling import Backlog
from chalicelib.pipeline.stream.settings import StreamSpec, is_stream, load_stream_spec
from chalicelib.pipeline.stream.worker import StageQueues, epoch_ms


def is_stream_spec(spec_path: str) -> bool:
    try:
        return is_stream(parse_document(Path(spec_path).read_text(encoding="utf-8")))
    except Exception:
        return False  # the batch path reports what is wrong with it


def sqs_client(endpoint_url: str) -> Any:
    # The engine does not check SigV4 signatures, but botocore refuses to sign without credentials.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "conveyor-local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "conveyor-local")
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    return aws_clients.client("sqs", endpoint_url=endpoint_url, region=region)


def create_queues(sqs: Any, spec: StreamSpec) -> dict[str, StageQueues]:
    """Each stage's queue with a RedrivePolicy to its dead-letter queue at ``max_receives``."""
    urls: dict[str, tuple[str, str]] = {}
    for stage in spec.pipeline.stage_names:
        settings = spec.settings[stage]
        dlq = sqs.create_queue(QueueName=spec.dead_letter_queue_name(stage),
                               Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=spec.queue_name(stage))["QueueUrl"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": settings.max_receives})
        sqs.set_queue_attributes(QueueUrl=url, Attributes={
            "VisibilityTimeout": str(settings.visibility_timeout), "RedrivePolicy": policy})
        urls[stage] = (url, dlq)
    return {stage: StageQueues(url, dlq, {down: urls[down][0] for down in spec.downstream(stage)})
            for stage, (url, dlq) in urls.items()}


@dataclass
class LocalStream:
    spec: StreamSpec
    spec_path: str
    endpoint_url: str
    data_dir: Path
    sqs: Any
    queues: dict[str, StageQueues]
    items: SqliteItemStore
    publisher: MemoryPublisher
    run_id: str

    @classmethod
    def open(cls, spec_path: str, endpoint_url: str, data_dir: str | Path) -> LocalStream:
        spec = load_stream_spec(spec_path)
        root = Path(data_dir).resolve()
        sqs = sqs_client(endpoint_url)
        run_id = f"{spec.name}-stream"
        runs = SqliteRunStore(root / RUNS_DB)
        try:
            runs.create_run(RunRecord(run_id=run_id, pipeline=spec.name, status=RunStatus.RUNNING,
                                      created_at=epoch_ms(), prefix=(root / "runs" / run_id).as_uri(), items=0,
                                      spec=parse_document(Path(spec_path).read_text(encoding="utf-8")),
                                      source="stream"))
        finally:
            runs.close()
        return cls(spec, str(Path(spec_path).resolve()), endpoint_url, root, sqs, create_queues(sqs, spec),
                   SqliteItemStore(root / RUNS_DB), MemoryPublisher(sink=event_log_appender(root / EVENTS_LOG)),
                   run_id)

    @property
    def prefix(self) -> str:
        return (self.data_dir / "runs" / self.run_id).as_uri()

    def close(self) -> None:
        self.items.close()

    def submit(self, item: Item, arrived_ms: int | None = None) -> None:
        """Sends the item to every entry stage (one message each) and records it QUEUED there."""
        message = StreamMessage(self.run_id, self.spec.name, "", item, self.prefix, arrived_ms or epoch_ms())
        for stage in self.spec.entry_stages:
            self.sqs.send_message(QueueUrl=self.queues[stage].url, MessageBody=message.for_stage(stage).to_body())
            record = ItemRecord(self.run_id, stage, item.key, ItemStatus.QUEUED, arrived_at=message.arrived_ms,
                                updated_at=epoch_ms())
            if self.items.put_item(record):
                self.publisher.publish([item_event(record, self.spec.name, now_ms=epoch_ms())])

    def submit_file(self, path: Path, arrived_ms: int | None = None) -> Item:
        item = Item(key=path.stem, files=(path.resolve().as_uri(),))
        self.submit(item, arrived_ms)
        return item

    def backlog(self, stage: str) -> Backlog:
        counts = self.depth(self.queues[stage].url)
        return Backlog(counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"])

    def depth(self, url: str) -> Mapping[str, int]:
        raw = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return {k: int(v) for k, v in raw.items()}

    def dead_letters(self, stage: str) -> int:
        return self.depth(self.queues[stage].dead_letter_url)["ApproximateNumberOfMessages"]
