"""`conveyor serve --inbox`: wires the inbox watcher to a local runtime over the serving engine."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from chalicelib.local.inbox_watcher import watch
from chalicelib.local.runtime import open_with_engine
from chalicelib.objectstores import open_store
from chalicelib.pipeline.errors import SpecValidationError
from chalicelib.pipeline.spec import load_spec, parse_document

logger = logging.getLogger(__name__)


def run_inbox(inbox_dir: str, spec_path: str, engine: Any, stop: threading.Event, poll_seconds: float = 1.0) -> None:
    """Starts a run for each manifest dropped into ``inbox_dir`` until ``stop`` is set."""
    try:
        load_spec(spec_path)
    except SpecValidationError as err:
        logger.error("inbox disabled: %s", err)
        print(f"error: inbox disabled: {err}")
        return
    document = parse_document(Path(spec_path).read_text(encoding="utf-8"))
    runtime = open_with_engine(engine)
    try:
        print(f"inbox: watching {Path(inbox_dir).resolve()} for manifests", flush=True)
        watch(
            Path(inbox_dir), runtime.starter, stop, spec=document,
            runs_prefix=(runtime.data_dir / "runs").resolve().as_uri(),
            objects=open_store("file:///"), base_dir=str(Path(spec_path).resolve().parent),
            poll_seconds=poll_seconds,
            on_start=lambda run_id, path: print(f"inbox: {path.name} -> run {run_id}", flush=True),
        )
    finally:
        runtime.close()
