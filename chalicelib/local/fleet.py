"""The local fleet: each stream stage's workers as processes, scaled on the stage queue's backlog.

Every ``interval`` seconds a stage asks the core's scaling decision how many workers to run
(``desired_workers``): it starts more at once, and scales in only after the wish stayed lower
for ``scale_in_after`` seconds, and then only workers that said ``idle`` (a busy worker is
never interrupted). A worker that dies is dropped and its process group killed (its tool
with it); the message it held reappears after the visibility timeout, and the next round
starts a replacement if the backlog still wants one. ``stop()`` sends SIGTERM to every worker
(finish within the grace period or return the message), then kills what is left.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib.local.stream import LocalStream
from chalicelib.pipeline.stream.scaling import Backlog, desired_workers
from chalicelib.pipeline.stream.settings import StreamSettings

logger = logging.getLogger(__name__)
_ids = itertools.count(1)


@dataclass
class WorkerProcess:
    worker_id: str
    proc: subprocess.Popen[str]
    state: str = "starting"
    stopping: bool = False
    handled: int = 0
    reader: threading.Thread | None = None

    def read_states(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word = line.strip()
            if word == "idle" and self.state == "busy":
                self.handled += 1
            self.state = word or self.state


@dataclass
class StageFleet:
    stage: str
    settings: StreamSettings
    spawn: Callable[[str], subprocess.Popen[str]]
    backlog: Callable[[], Backlog]
    scale_in_after: float = 3.0
    workers: list[WorkerProcess] = field(default_factory=list)
    replaced: int = 0
    _lower_since: float | None = None

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if not w.stopping]

    def tick(self) -> None:
        self._reap()
        current = len(self.running)
        wanted = desired_workers(self.backlog(), current, self.settings)
        if wanted > current:
            self._lower_since = None
            for _ in range(wanted - current):
                self._start()
        elif wanted < current:
            now = time.monotonic()
            self._lower_since = self._lower_since or now
            if now - self._lower_since >= self.scale_in_after:
                idle = [w for w in self.running if w.state == "idle"]
                for worker in idle[: current - wanted]:
                    self._stop(worker)
        else:
            self._lower_since = None

    def _start(self) -> None:
        worker_id = f"{self.stage}-{next(_ids)}-{os.getpid()}"
        proc = self.spawn(worker_id)
        worker = WorkerProcess(worker_id, proc)
        worker.reader = threading.Thread(target=worker.read_states, name=f"fleet-{worker_id}", daemon=True)
        worker.reader.start()
        self.workers.append(worker)

    def _stop(self, worker: WorkerProcess) -> None:
        worker.stopping = True
        try:
            worker.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        for worker in list(self.workers):
            code = worker.proc.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            _kill_group(worker.proc.pid)  # a tool the dead worker left running
            if not worker.stopping:
                self.replaced += 1
                logger.warning("stream worker %s died (exit %s); its message returns after the visibility "
                               "timeout", worker.worker_id, code)

    def stop_all(self, grace: float) -> None:
        for worker in self.running:
            self._stop(worker)
        deadline = time.monotonic() + grace + 3
        for worker in self.workers:
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(worker.proc.pid)
            if worker.proc.stdout is not None:
                worker.proc.stdout.close()
        self.workers.clear()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Fleet:
    """Every stage's fleet of one stream, ticked on a background thread."""

    def __init__(self, stream: LocalStream, *, grace: float = 10.0, interval: float = 0.5, scale_in_after: float = 3.0,
                 python: str = sys.executable) -> None:
        self.stream = stream
        self.grace, self.interval, self.python = grace, interval, python
        self.stages = {name: StageFleet(name, settings, self._spawner(name), self._backlog(name), scale_in_after)
                       for name, settings in stream.spec.settings.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conveyor-fleet", daemon=True)
        self._lock = threading.Lock()

    def _spawner(self, stage: str) -> Callable[[str], subprocess.Popen[str]]:
        stream = self.stream

        def spawn(worker_id: str) -> subprocess.Popen[str]:
            argv = [self.python, "-m", "chalicelib.local.stream_worker", "--spec", stream.spec_path,
                    "--stage", stage, "--endpoint-url", stream.endpoint_url,
                    "--data-dir", str(stream.data_dir), "--worker-id", worker_id,
                    "--grace", str(self.grace)]
            # Its own session: the fleet can kill a dead worker's tool with its process group.
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                    start_new_session=True)

        return spawn

    def _backlog(self, stage: str) -> Callable[[], Backlog]:
        return lambda: self.stream.backlog(stage)

    def start(self) -> Fleet:
        self._thread.start()
        return self

    def tick(self) -> None:
        with self._lock:
            for fleet in self.stages.values():
                fleet.tick()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                logger.exception("fleet round failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for fleet in self.stages.values():
                fleet.stop_all(self.grace)

    def workers(self) -> dict[str, list[WorkerProcess]]:
        return {name: list(fleet.workers) for name, fleet in self.stages.items()}
