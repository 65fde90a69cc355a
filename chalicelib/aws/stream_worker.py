"""One stream worker as an ECS task: ``python -m chalicelib.aws.stream_worker``.

The AWS composition of the core's worker loop (the same ``StreamWorker`` the local fleet
runs): boto3's SQS client on the stage's queue, the runner's in-process item run against
``s3://``, the DynamoDB item store, the pipeline's EventBridge bus, and ECS task scale-in
protection while a message is held. ECS sends SIGTERM when it stops the task (scale-in,
deployment, Spot interruption): the worker stops receiving, finishes its item within the
grace period (the task's ``stopTimeout`` less a margin) or returns the message at once.

Configuration comes from the task definition, in one variable (``CONVEYOR_STREAM_WORKER``, JSON):
``pipeline``, ``runId``, ``stage``, ``prefix`` (``s3://bucket/runs/<run id>``), ``queueUrl``,
``deadLetterUrl``, ``downstream`` (stage -> queue URL), ``entry`` (accepts S3 arrivals),
``settings`` (the stage's stream settings), ``command`` (the tool's argv), ``itemsTable``,
``eventBus`` and ``graceSeconds``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib import aws_clients
from chalicelib.aws.item_store import DynamoItemStore
from chalicelib.aws.publisher import EventBridgePublisher
from chalicelib.aws.task_protection import TaskProtection
from chalicelib.pipeline.stream.arrivals import decoder_for_entry_stage
from chalicelib.pipeline.stream.messages import StreamMessage
from chalicelib.pipeline.stream.settings import StreamSettings
from chalicelib.pipeline.stream.worker import Outcome, StageQueues, StreamWorker
from chalicelib.runner.stream_item import run_stream_item

CONFIG_VARIABLE = "CONVEYOR_STREAM_WORKER"
_REQUIRED = ("pipeline", "runId", "stage", "prefix", "queueUrl", "deadLetterUrl", "command", "itemsTable",
             "eventBus")


class WorkerConfigError(ValueError):
    """The task definition's worker configuration is missing or malformed (names the field)."""


@dataclass(frozen=True)
class WorkerConfig:
    pipeline: str
    run_id: str
    stage: str
    prefix: str
    queues: StageQueues
    entry: bool
    settings: StreamSettings
    command: tuple[str, ...]
    items_table: str
    event_bus: str
    grace_seconds: float

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> WorkerConfig:
        raw_text = environ.get(CONFIG_VARIABLE)
        if not raw_text:
            raise WorkerConfigError(f"{CONFIG_VARIABLE} is not set (the task definition provides it)")
        try:
            raw = json.loads(raw_text)
        except ValueError as err:
            raise WorkerConfigError(f"{CONFIG_VARIABLE} is not JSON: {err}") from None
        if not isinstance(raw, dict):
            raise WorkerConfigError(f"{CONFIG_VARIABLE} must be a JSON object")
        missing = [name for name in _REQUIRED if not raw.get(name)]
        if missing:
            raise WorkerConfigError(f"{CONFIG_VARIABLE} lacks {', '.join(missing)}")
        command = raw["command"]
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise WorkerConfigError(f"{CONFIG_VARIABLE}.command must be a list of strings")
        return cls(pipeline=raw["pipeline"], run_id=raw["runId"], stage=raw["stage"], prefix=raw["prefix"],
                   queues=StageQueues(raw["queueUrl"], raw["deadLetterUrl"], dict(raw.get("downstream") or {})),
                   entry=bool(raw.get("entry")), settings=StreamSettings.from_dict(raw.get("settings") or {}),
                   command=tuple(command), items_table=raw["itemsTable"], event_bus=raw["eventBus"],
                   grace_seconds=float(raw.get("graceSeconds", 25)))


def make_processor(config: WorkerConfig, environ: Mapping[str, str],
                   scratch: Path) -> Callable[[StreamMessage, threading.Event], Outcome]:
    tool_env = {k: v for k, v in environ.items() if k != CONFIG_VARIABLE}

    def process(message: StreamMessage, cancel: threading.Event) -> Outcome:
        result = run_stream_item(message.prefix, config.stage, message.item, config.command, cancel=cancel,
                                 env=tool_env, scratch_parent=scratch, log=sys.stdout.buffer)
        return Outcome(ok=result.code == 0 and not result.cancelled, reason=result.reason,
                       cancelled=result.cancelled)

    return process


def build_worker(config: WorkerConfig, environ: Mapping[str, str], *, sqs: Any, dynamodb: Any, events: Any,
                 protection: TaskProtection, scratch: Path, wait_seconds: int = 20) -> StreamWorker:
    """The worker loop wired to AWS clients (injected, so tests pass moto's)."""
    decode = (decoder_for_entry_stage(run_id=config.run_id, pipeline=config.pipeline, stage=config.stage,
                                      prefix=config.prefix) if config.entry else StreamMessage.from_body)
    return StreamWorker(
        sqs, config.stage, config.settings, config.queues, make_processor(config, environ, scratch),
        DynamoItemStore(config.items_table, client=dynamodb), EventBridgePublisher(config.event_bus, client=events),
        worker_id=environ.get("HOSTNAME", "ecs-task"), wait_seconds=wait_seconds,
        grace_seconds=config.grace_seconds, on_state=protection.on_state, decode=decode,
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        config = WorkerConfig.from_environment(environ)
    except WorkerConfigError as err:
        print(f"conveyor stream worker: {err}", file=sys.stderr)
        return 2
    protection = TaskProtection.from_environment(environ, visibility_timeout_s=config.settings.visibility_timeout)
    worker = build_worker(config, environ, sqs=aws_clients.client("sqs"), dynamodb=aws_clients.client("dynamodb"),
                          events=aws_clients.client("events"), protection=protection,
                          scratch=Path(environ.get("TMPDIR", "/tmp")))
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
