"""`conveyor serve --inbox DIR --spec STREAM`: each file that lands in DIR becomes one stream item.

A landed file is copied to the data dir (``stream-inbox/<n>/<name>``, so the item's input
outlives the inbox), sent to the entry stages, and only then removed from the inbox: a crash
in between sends it again on restart, which publishes once (same item key). Write a file
elsewhere and rename it into the inbox; names starting with ``.`` are skipped.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from chalicelib.local.fleet import Fleet
from chalicelib.local.stream import LocalStream
from chalicelib.pipeline.errors import SpecValidationError

logger = logging.getLogger(__name__)


def accept_landed(inbox: Path, stream: LocalStream) -> list[str]:
    """Submits every file now in ``inbox``; returns their item keys."""
    keys = []
    for path in sorted(inbox.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        kept = stream.data_dir / "stream-inbox" / uuid.uuid4().hex[:12] / path.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, kept)
        keys.append(stream.submit_file(kept).key)
        path.unlink(missing_ok=True)
    return keys


def run_stream_inbox(inbox_dir: str, spec_path: str, engine: Any, url: str, stop: threading.Event,
                     poll_seconds: float = 0.2) -> None:
    """Runs the stream's fleet and feeds it the files landing in ``inbox_dir`` until ``stop`` is set."""
    try:
        stream = LocalStream.open(spec_path, url, engine.data_dir)
    except SpecValidationError as err:
        print(f"error: inbox disabled: {err}", flush=True)
        return
    inbox = Path(inbox_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(stream).start()
    print(f"inbox: stream {stream.spec.name} (run {stream.run_id}) watching {inbox.resolve()} for files", flush=True)
    try:
        while not stop.wait(poll_seconds):
            try:
                for key in accept_landed(inbox, stream):
                    print(f"inbox: item {key} queued", flush=True)
            except OSError as err:
                logger.warning("inbox: %s", err)
    finally:
        fleet.stop()
        stream.close()
