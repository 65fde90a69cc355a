"""Inbox watcher: polls a local folder and starts one run per manifest dropped into it (through the trigger, as S3 uploads do on AWS).

A file is picked up once its size and modification time held still for one poll (so a file
being written is not read half-way); its content hash plays the part of S3's ETag, so the
same file delivered twice (copied again, touched) starts one run. Hidden files and
``*.tmp``/``*.part`` names are ignored, which allows "write then rename" drops.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chalicelib.pipeline.errors import PipelineError
from chalicelib.pipeline.objectstore import ObjectStore
from chalicelib.pipeline.ports import RunStarter
from chalicelib.pipeline.trigger import DeliveredObject, start_run_for_object

logger = logging.getLogger(__name__)
IGNORED_SUFFIXES = (".tmp", ".part", ".swp")


def is_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES)


def content_etag(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InboxWatcher:
    """One polling step at a time (``poll``), so tests drive it without threads or sleeps."""

    def __init__(
        self,
        inbox: Path,
        starter: RunStarter,
        *,
        spec: Mapping[str, Any],
        runs_prefix: str,
        objects: ObjectStore | None = None,
        base_dir: str = "",
        on_start: Callable[[str, Path], None] | None = None,
    ) -> None:
        self._inbox = inbox.resolve()
        self._starter = starter
        self._spec = spec
        self._runs_prefix = runs_prefix
        self._objects = objects
        self._base_dir = base_dir
        self._on_start = on_start
        self._pending: dict[str, tuple[int, int]] = {}
        self._done: dict[str, tuple[int, int]] = {}

    def poll(self) -> list[str]:
        """Starts runs for files that are new (or changed) and stable; returns their run ids."""
        started: list[str] = []
        if not self._inbox.is_dir():
            return started
        for path in sorted(self._inbox.rglob("*")):
            if not is_candidate(path):
                continue
            name = path.relative_to(self._inbox).as_posix()
            stat = path.stat()
            fingerprint = (stat.st_mtime_ns, stat.st_size)
            if self._done.get(name) == fingerprint:
                continue
            if self._pending.get(name) != fingerprint:
                self._pending[name] = fingerprint  # seen for the first time, or still changing
                continue
            del self._pending[name]
            self._done[name] = fingerprint
            run_id = self._start(path, name)
            if run_id:
                started.append(run_id)
        return started

    def _start(self, path: Path, name: str) -> str | None:
        obj = DeliveredObject(self._inbox.as_uri(), name, content_etag(path))
        try:
            run_id = start_run_for_object(
                self._starter, obj, spec=self._spec, runs_prefix=self._runs_prefix,
                objects=self._objects, base_dir=self._base_dir,
            )
        except PipelineError as err:
            logger.error("inbox: %s was not started: %s", name, err)
            return None
        logger.info("inbox: %s -> run %s", name, run_id)
        if self._on_start is not None:
            self._on_start(run_id, path)
        return run_id


def watch(
    inbox: Path,
    starter: RunStarter,
    stop: threading.Event,
    *,
    spec: Mapping[str, Any],
    runs_prefix: str,
    objects: ObjectStore | None = None,
    base_dir: str = "",
    poll_seconds: float = 1.0,
    on_start: Callable[[str, Path], None] | None = None,
) -> None:
    """Polls ``inbox`` every ``poll_seconds`` until ``stop`` is set."""
    inbox.mkdir(parents=True, exist_ok=True)
    watcher = InboxWatcher(
        inbox, starter, spec=spec, runs_prefix=runs_prefix, objects=objects,
        base_dir=base_dir, on_start=on_start,
    )
    while not stop.is_set():
        watcher.poll()
        stop.wait(poll_seconds)
