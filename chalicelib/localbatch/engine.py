"""Composition root of the embedded engine: store + scheduler + executor + event dispatch, one lock.

    engine = Engine(data_dir)          # opens or creates the SQLite state
    engine.start()                     # recovers lost attempts, starts the scheduler loop
    batch = engine.client()            # boto3-shaped in-process client
    engine.subscribe(callback)         # Batch Job State Change envelopes, in commit order
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.localbatch import arns, wire
from chalicelib.localbatch.api.operations import BatchService
from chalicelib.localbatch.clock import Clock, SystemClock
from chalicelib.localbatch.execution.container_env import ContainerEnvironment, ContainerOptions, JobFacts
from chalicelib.localbatch.execution.executor import ExitInfo
from chalicelib.localbatch.execution.factory import make_executor
from chalicelib.localbatch.execution.logpool import LogPool
from chalicelib.localbatch.execution.task_endpoints import TaskEndpoints
from chalicelib.localbatch.model import ComputeEnvironment, JobQueue
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from chalicelib.localbatch.scheduling.loader import load_state
from chalicelib.localbatch.scheduling.scheduler import EngineOptions, Scheduler
from chalicelib.localbatch.sqs.service import SqsService
from chalicelib.localbatch.storage import folder_lock
from chalicelib.localbatch.storage.store import Store

logger = logging.getLogger(__name__)
DEFAULT_CE = "local"
DEFAULT_QUEUE = "default"
Subscriber = Callable[[dict[str, Any]], None]
LAUNCHER_THREADS = 2
EXIT_PATH_NO_COMMIT = 1 << 62  # a group-commit interval that never elapses
# Ticks that fail in a row before the watchdog calls the scheduler dead: one failure may be a
# passing fault, but a tick that fails every time leaves every queue stuck while the API answers.
MAX_TICK_FAILURES = 20


class Engine:
    """AWS Batch on one host."""

    def __init__(self, data_dir: str | Path, *, host: HostCapacity | None = None,
                 options: EngineOptions | None = None, executor: Any = None,
                 clock: Clock | None = None, container: ContainerOptions | None = None,
                 owner: str = "run") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Raises FolderInUseError when another engine runs on this folder: it would kill
        # that engine's attempts as orphans (see folder_lock).
        self.folder_lock = folder_lock.acquire(self.data_dir, owner)
        try:
            self._open(host, options, executor, clock, container)
        except BaseException:
            self.folder_lock.release()
            raise

    def _open(self, host: HostCapacity | None, options: EngineOptions | None, executor: Any,
              clock: Clock | None, container: ContainerOptions | None) -> None:
        self.host = host or HostCapacity.detect()
        self.store = Store(self.data_dir / "state.sqlite3")
        self.token = self._engine_token()
        self.endpoints: TaskEndpoints | None = None
        if executor is None:
            options_ = container or ContainerOptions()
            self.endpoints = TaskEndpoints(options_.credentials, options_.region)
            self.container = ContainerEnvironment(options_, str(self.data_dir / "runtime"), self.endpoints)
            self.container.lookup = self._job_facts
            executor = make_executor(self.token, "auto", self.container)
        self.executor = executor
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.scheduler = Scheduler(self.store, self.executor, clock or SystemClock(), self.host, self.data_dir,
                                   options)
        self.scheduler.on_commit = self._on_commit
        # Housekeeping off the hot path: scratch folders (path, keep_as) and callables.
        self._scratch: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.scheduler.scratch_done = self._scratch.put
        if getattr(self.executor, "takes_spare_logs", False):
            self.scheduler.log_pool = LogPool(self.scheduler.log_path(""))
        self._tending_logs = False
        self._launch_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # An executor that launches without blocking is called inline from the tick; others
        # fork on launcher threads so a tick never waits for fork/exec.
        self._inline = hasattr(self.executor, "launch_nowait")
        self.scheduler.launcher = None if self._inline else self._enqueue_launches
        self.service = BatchService(self.scheduler, self.lock, self._wake.set)
        self.sqs = SqsService(self.data_dir / "sqs.sqlite3", clock)  # its own file and lock
        self.executor.set_exit_callback(self._on_exit)
        if hasattr(self.executor, "set_exits_callback"):
            self.executor.set_exits_callback(self._on_exits)
        self._subscribers: list[Subscriber] = []
        self._dispatch: queue.SimpleQueue[tuple[int, list[str]] | None] = queue.SimpleQueue()
        self._feed = threading.Condition()
        self._last_seq = self.store.last_event_seq()
        self._unfiltered_readers = 0
        self._job_readers: collections.Counter[str] = collections.Counter()
        self._job_last_seq: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self._started = False
        # The console's page sends this in X-Conveyor-Console-Token (access.py): a fresh random
        # value per engine start, so only a page this engine served can know it.
        self.console_token = secrets.token_urlsafe(32)
        # Watchdog: set, with the reason, when a loop thread dies; /health reports it, the API
        # refuses work and `conveyor serve` exits non-zero.
        self.failure: str | None = None
        self.failed = threading.Event()
        with self.lock:
            lost = load_state(self.scheduler, self.store)
            self._ensure_defaults()
            self._lost = lost

    def _engine_token(self) -> str:
        token = self.store.get_meta("engine_token")
        if token is None:
            token = uuid.uuid4().hex
            self.store.set_meta("engine_token", token)
        return token

    def _job_facts(self, job_id: str) -> JobFacts | None:
        """What a job's container is told about it (read from the scheduler's table, no lock:
        one dict read of an entry only the scheduler thread replaces)."""
        job = self.scheduler.jobs.get(job_id)
        if job is None:
            return None
        sub = job.sub
        ce = self.scheduler.ces.get(job.placed_ce or "")
        kind = str((ce.compute_resources or {}).get("type", "")) if ce is not None else ""
        return JobFacts(job_id=job_id, job_name=sub.name, queue=sub.queue, compute_environment=job.placed_ce or "",
                        fargate=kind.startswith("FARGATE"), job_role_arn=sub.container.get("jobRoleArn"),
                        log_stream=job.log_stream or "", array_size=sub.array_size)

    def _ensure_defaults(self) -> None:
        """A fresh data dir gets compute environment `local` (this host) and queue `default`."""
        if self.store.get_meta("initialised"):
            return
        ce = ComputeEnvironment(
            name=DEFAULT_CE, arn=arns.compute_environment_arn(DEFAULT_CE), type="MANAGED", state="ENABLED",
            compute_resources={"type": "EC2", "minvCpus": 0, "maxvCpus": int(self.host.vcpus),
                               "desiredvCpus": 0, "instanceTypes": ["local"]},
            tags={})
        queue_ = JobQueue(name=DEFAULT_QUEUE, arn=arns.queue_arn(DEFAULT_QUEUE), priority=1, state="ENABLED",
                          ce_order=[(1, DEFAULT_CE)], tags={}, seq=1)
        self.scheduler.ces[ce.name] = ce
        self.scheduler.queues[queue_.name] = queue_
        self.store.save_compute_environment(ce)
        self.store.save_queue(queue_)
        self.store.set_meta("initialised", "1")

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> Engine:
        """Kills attempts a previous engine left running, ends them as lost hosts, then schedules."""
        killed = self.executor.kill_orphans()
        if killed:
            logger.info("killed %d attempt(s) left running by a previous engine", len(killed))
        with self.lock:
            self.scheduler.recover_lost_attempts(self._lost, killed)
            self._lost = []
            self.scheduler.commit()
        loops = [(self._loop, "scheduler"), (self._dispatch_loop, "events"), (self._scratch_loop, "scratch")]
        if not self._inline:
            loops += [(self._launch_loop, f"launcher-{n}") for n in range(LAUNCHER_THREADS)]
        self._started = True
        self._tend_log_pool([])
        for target, name in loops:
            thread = threading.Thread(target=self._guarded, args=(target, name), name=f"localbatch-{name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wake.set()
        return self

    def stop(self) -> None:
        """Stops scheduling and kills running attempts (they recover as lost hosts on the next start)."""
        self._stopping.set()
        self._wake.set()
        self._dispatch.put(None)
        self._scratch.put(None)
        for _ in range(LAUNCHER_THREADS):
            self._launch_queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self.executor.close()
        if self.endpoints is not None:
            self.endpoints.close()
        self.sqs.close()
        self.store.close()
        self.folder_lock.release()

    def _guarded(self, target: Callable[[], None], name: str) -> None:
        """Runs one of the engine's loops; if it ends before stop(), the engine is declared failed."""
        try:
            target()
        except BaseException as err:
            logger.critical("engine %s thread died", name, exc_info=True)
            self.fail(f"the {name} thread died: {type(err).__name__}: {str(err)[:200]}")
            return
        if not self._stopping.is_set():
            self.fail(f"the {name} thread ended unexpectedly")

    def fail(self, reason: str) -> None:
        """The watchdog's verdict: the engine can no longer run what it accepts."""
        if self.failure is None:
            self.failure = reason
            logger.critical("engine failed: %s; it answers 503 until restarted", reason)
        self.failed.set()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_exit(self, info: ExitInfo) -> None:
        self._on_exits([info])

    def _on_exits(self, infos: list[ExitInfo]) -> None:
        """Ends the attempts and starts what can start, right here on the executor's thread.

        Handing exits to the scheduler thread would add two thread wake-ups to every job's
        path from one process ending to the next one starting; exits read together share
        one scheduling round.
        """
        scheduler = self.scheduler
        scheduler.exits.extend(infos)
        if self._stopping.is_set() or not self._started:
            self._wake.set()
            return
        try:
            with self.lock:
                due_before = scheduler.next_timer_ms()
                # The commit is left to the loop's group-commit timer: no SQLite on this path.
                scheduler.tick(group_commit_ms=EXIT_PATH_NO_COMMIT)
                due_after = scheduler.next_timer_ms()
        except Exception:
            logger.exception("scheduler tick on exit failed")
            due_before, due_after = None, 0
        # Wake the loop only when its next deadline moved (a new timeout, or changes now
        # waiting for the group commit); waking it for every exit costs as much as the tick.
        if due_after is not None and (due_before is None or due_after < due_before) or scheduler.has_work():
            self._wake.set()

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._loop_once()
                failures = 0
            except Exception as err:
                failures += 1
                if failures >= MAX_TICK_FAILURES:
                    raise RuntimeError(f"{failures} scheduler ticks failed in a row; last: {type(err).__name__}: {err}") from err
                if failures == 1:
                    logger.exception("scheduler tick failed")
                self._stopping.wait(0.01 * failures)  # no busy loop filling the log with one fault
                self._wake.set()  # retried at once: a fault that persists trips the watchdog in ~2 s

    def _loop_once(self) -> None:
        scheduler = self.scheduler
        due = scheduler.next_timer_ms()
        timeout = None if due is None else max(0.0, (due - scheduler.now()) / 1000)
        self._wake.wait(timeout if timeout is None else min(timeout, 5.0))
        self._wake.clear()
        if self._stopping.is_set():
            return
        batch, ended_logs = None, []
        with self.lock:
            scheduler.tick(group_commit_ms=EXIT_PATH_NO_COMMIT)
            if scheduler.now() - scheduler.last_commit_ms >= scheduler.options.group_commit_ms:
                batch = scheduler.take_batch()
                # Ends taken with (or before) this batch are committed once it is written.
                ended_logs, scheduler.ended_logs = scheduler.ended_logs, []
                if batch is not None:
                    self.store.write_lock.acquire()  # keeps batches in order; see take_batch
        if batch is not None:
            # SQLite work happens outside the engine lock: exits keep flowing meanwhile.
            try:
                scheduler.write_batch(batch)
            finally:
                self.store.write_lock.release()
        self._tend_log_pool(ended_logs)
        if scheduler.has_work():
            self._wake.set()  # e.g. a big array still spawning: go on after letting API calls in

    def _enqueue_launches(self, requests: list[Any]) -> None:
        for request in requests:
            self._launch_queue.put(request)

    def _launch_loop(self) -> None:
        """Forks attempts off the scheduler thread; fork/exec releases the GIL, so launches overlap."""
        scheduler = self.scheduler
        while True:
            request = self._launch_queue.get()
            if request is None:
                return
            pid = scheduler.launch_one(request)
            scheduler.launched.append((request.attempt_key, pid, scheduler.now()))
            self._wake.set()

    def _tend_log_pool(self, ended_logs: list[str]) -> None:
        """Recycles committed quiet logs and tops the spare-log pool up, on the housekeeping thread."""
        pool = self.scheduler.log_pool
        if pool is None or not ended_logs and (self._tending_logs or not pool.wants_refill()):
            return
        self._tending_logs = True

        def tend() -> None:
            for path in ended_logs:
                pool.recycle(path)
            pool.refill()
            self._tending_logs = False
        self._scratch.put(tend)

    def _scratch_loop(self) -> None:
        while True:
            item = self._scratch.get()
            if item is None:
                return
            if callable(item):
                try:
                    item()
                except Exception:
                    logger.exception("engine housekeeping failed")
                continue
            path, keep_as = item
            if keep_as is None:
                shutil.rmtree(path, ignore_errors=True)
                continue
            try:
                os.rename(path, os.path.join(os.path.dirname(path), keep_as))
            except OSError:
                pass  # the folder stays under its scratch name

    # -- events ---------------------------------------------------------------------------------
    def _on_commit(self, last_seq: int, events: list[tuple[str, int, str]]) -> None:
        with self._feed:
            self._last_seq = last_seq
            # Wake feed readers only when this commit holds something they wait for:
            # a follower of one job must not re-query the log after every commit.
            relevant = self._unfiltered_readers > 0
            for job_id, _, _ in events:
                if job_id in self._job_readers:
                    self._job_last_seq[job_id] = last_seq
                    relevant = True
            if relevant:
                self._feed.notify_all()
        if self._subscribers:
            self._dispatch.put((last_seq - len(events) + 1, events))

    def _dispatch_loop(self) -> None:
        while True:
            item = self._dispatch.get()
            if item is None:
                return
            first_seq, events = item
            subscribers = list(self._subscribers)
            for offset, (job_id, time_ms, body) in enumerate(events):
                envelope = json.loads(self.render(first_seq + offset, job_id, time_ms, body))
                for callback in subscribers:
                    try:
                        callback(envelope)
                    except Exception:
                        logger.exception("event subscriber failed")

    def render(self, seq: int, job_id: str, time_ms: int, body: str) -> str:
        job = self.scheduler.jobs.get(job_id)
        return wire.render_event(self.token, seq, job_id, time_ms, body, job.sub if job else None)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Calls `callback(envelope)` for every event committed from now on; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
        return unsubscribe

    def read_events(self, after: int = 0, limit: int = 1000, wait_seconds: float = 0.0,
                    job_id: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Events after a sequence number, waiting up to `wait_seconds` for new ones. Returns (events, next)."""
        rows, next_seq = self.store.read_events(after, limit, job_id)
        deadline = time.monotonic() + wait_seconds
        while not rows and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            seen = next_seq
            with self._feed:
                if job_id is None:
                    self._unfiltered_readers += 1
                    ready = lambda seen=seen: self._last_seq > seen or self._stopping.is_set()  # noqa: E731
                else:
                    self._job_readers[job_id] += 1
                    # A commit between our read and this registration did not know we wait for this
                    # job: _last_seq past what we read sends us back to read (else we slept it through).
                    missed = self._last_seq > seen
                    ready = lambda seen=seen, missed=missed: missed or self._job_last_seq.get(job_id, 0) > seen \
                        or self._stopping.is_set()  # noqa: E731
                try:
                    self._feed.wait_for(ready, remaining)
                finally:
                    if job_id is None:
                        self._unfiltered_readers -= 1
                    else:
                        self._job_readers[job_id] -= 1
                        if not self._job_readers[job_id]:
                            del self._job_readers[job_id]
                            self._job_last_seq.pop(job_id, None)
            rows, next_seq = self.store.read_events(next_seq, limit, job_id)
        return [json.loads(self.render(*row)) for row in rows], next_seq

    # -- clients and logs -----------------------------------------------------------------------
    def client(self) -> Any:
        from chalicelib.localbatch.api.client import LocalBatchClient
        return LocalBatchClient(self.service)

    def read_log(self, job_id: str, attempt: int | None = None) -> str:
        """The stdout and stderr of a job's attempt (the latest by default)."""
        from chalicelib.localbatch.errors import ClientException
        with self.lock:
            job = self.scheduler.jobs.get(job_id)
            if job is None:
                raise ClientException(f"jobId: job {job_id!r} does not exist")
            if job.is_parent:
                raise ClientException(f"jobId: {job_id} is an array job; its logs are its children's: "
                                      f"{job_id}:0 to {job_id}:{int(job.sub.array_size or 1) - 1}")
            streams = [a["container"].get("logStreamName") for a in job.attempts]
            if job.log_stream and job.log_stream not in streams:
                streams.append(job.log_stream)
        if not streams:
            return ""
        if attempt is not None and not 1 <= attempt <= len(streams):
            raise ClientException(f"attempt: job {job_id!r} has {len(streams)} attempt(s), got {attempt}")
        stream = streams[-1] if attempt is None else streams[attempt - 1]
        try:
            return Path(self.scheduler.log_path(stream or "")).read_text(errors="replace")
        except OSError:
            return ""
