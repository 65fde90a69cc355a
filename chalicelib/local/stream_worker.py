"""One stream worker process of the local fleet: ``python -m chalicelib.local.stream_worker ...``.

Composes the core's worker loop with boto3's SQS client against the engine, the runner's
in-process item run, the SQLite item store and the local event log. It tells the fleet its
state on stdout, one word a line (``idle``, ``busy``, ``stopped``), so the fleet scales in only
idle workers; the tool's own output goes to the worker's log file. SIGTERM: stop receiving,
finish the item within ``--grace`` seconds or return its message.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from chalicelib.local.stream import LocalStream
from chalicelib.pipeline.payloads import stage_image
from chalicelib.pipeline.stream.messages import StreamMessage
from chalicelib.pipeline.stream.worker import Outcome, StreamWorker
from chalicelib.runner.stream_item import run_stream_item


def tool_environment(stream: LocalStream, stage: str) -> dict[str, str]:
    """The host's environment with the stage's ``file://`` image on PATH and PYTHONPATH, plus its variables."""
    spec_stage = stream.spec.stage(stage)
    env = dict(os.environ)
    image = stage_image(spec_stage)
    if image.startswith("file://"):
        folder = image[len("file://"):]
        env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = f"{folder}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else folder
    env.update(spec_stage.env)
    return env


def make_processor(stream: LocalStream, stage: str, log: IO[bytes]):  # type: ignore[no-untyped-def]
    command = stream.spec.stage(stage).command
    env = tool_environment(stream, stage)
    scratch = stream.data_dir / "stream-scratch"

    def process(message: StreamMessage, cancel: threading.Event) -> Outcome:
        result = run_stream_item(message.prefix, stage, message.item, command, cancel=cancel, env=env,
                                 scratch_parent=scratch, log=log)
        return Outcome(ok=result.code == 0 and not result.cancelled, reason=result.reason,
                       cancelled=result.cancelled)

    return process


def _say(state: str) -> None:
    print(state, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.local.stream_worker")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--wait", type=int, default=1, help="long-poll seconds per receive")
    args = parser.parse_args(argv)
    stream = LocalStream.open(args.spec, args.endpoint_url, args.data_dir)
    logs = Path(args.data_dir) / "stream-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{args.worker_id}.log").open("ab") as log:
        worker = StreamWorker(stream.sqs, args.stage, stream.spec.settings[args.stage], stream.queues[args.stage],
                              make_processor(stream, args.stage, log), stream.items, stream.publisher,
                              worker_id=args.worker_id, wait_seconds=args.wait, grace_seconds=args.grace,
                              on_state=_say)
        signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the fleet decides; Ctrl-C reaches it, not us
        worker.run()
    stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
