"""tick(): admissions, dependencies, queue priority, placement, attempt ends, retries, timeouts.

All job state lives in memory (state.py) and is mutated only under the engine lock. Ticks
collect the jobs they changed and the events those changes produced; both are written
together in one SQLite transaction (a group commit, at most `group_commit_ms` later). An
attempt's log file, created before its process starts, is its durable trace in between:
after a crash the engine knows every attempt that may have run.

The Scheduler keeps the journal of changes (set_status, the group commit), placement and
the tick, and holds its collaborators, each built here with what it needs: Admission
(admission.py: submissions, array children, dependencies), Attempts (attempts.py: launch,
timers, an attempt's end and files), Arming (arming.py: successor launches held by the
executor) and Control (control.py: cancel, terminate, recovery). What follows an attempt's
end, retry included, is decided in one place: `_settle`, which asks retry.py.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from chalicelib.localbatch import wire
from chalicelib.localbatch.clock import Clock
from chalicelib.localbatch.execution.executor import Executor, ExitInfo, LaunchRequest
from chalicelib.localbatch.execution.logpool import LogPool
from chalicelib.localbatch.model import (
    REASON_EXITED,
    Job,
    JobQueue,
    JobStatus,
)
from chalicelib.localbatch.scheduling import retry
from chalicelib.localbatch.scheduling.admission import Admission
from chalicelib.localbatch.scheduling.arming import Arming
from chalicelib.localbatch.scheduling.attempts import LIVE, AttemptEnd, Attempts
from chalicelib.localbatch.scheduling.capacity import (
    HostCapacity,
    HostLedger,
    choose_environment,
    never_fits,
)
from chalicelib.localbatch.scheduling.control import Control
from chalicelib.localbatch.scheduling.state import EngineOptions, SchedulerState
from chalicelib.localbatch.storage.store import Store

__all__ = ["Batch", "EngineOptions", "Scheduler"]  # EngineOptions: defined in state.py

@dataclass(frozen=True)
class Batch:
    """Job rows and events taken from the scheduler for one transaction."""

    rows: list[tuple[str, str, str | None, int | None, str]]
    events: list[tuple[str, int, str]]
    number: int  # batches are numbered as they are taken (SchedulerState.batches_taken)


class Scheduler:
    """The engine's state machine; the service and the engine loop call it under one lock."""

    def __init__(self, store: Store, executor: Executor, clock: Clock, host: HostCapacity, data_dir: Path,
                 options: EngineOptions | None = None) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.host = host
        self.options = options or EngineOptions()
        self.state = state = SchedulerState(HostLedger(host))
        # The tables the API and the engine read, by their familiar names (the same objects).
        self.ledger = state.ledger
        self.jobs, self.top_level, self.running = state.jobs, state.top_level, state.running
        self.ces, self.queues, self.job_definitions = state.ces, state.queues, state.job_definitions
        self.armed = state.armed
        self._runnable = state.runnable
        self.admissions: deque[Job] = deque()
        self.exits: deque[ExitInfo] = deque()  # attempt ends reported by the executor, settled by tick()
        self._dirty: dict[str, Job] = {}
        self._events: list[tuple[str, int, str]] = []
        self._last_commit_ms = 0
        self._head_fits: dict[str, str] = {}  # queue -> its head job that fits some environment
        self.on_commit: Callable[[int, list[tuple[str, int, str]]], None] = lambda last_seq, events: None
        self.attempts = Attempts(state, self, executor, self.options, random.Random(self.options.seed),
                                 Path(data_dir), self.exits)
        self.arming = Arming(state, self, self.attempts, executor)
        self.admission = Admission(state, self, self.admissions)
        self.control = Control(state, self, self.attempts, self.arming, executor, self.options, self._end_attempt)

    # -- what the engine sets and reads on the attempts ------------------------------------------
    @property
    def launcher(self) -> Callable[[list[LaunchRequest]], None] | None:
        """Set by the engine to fork on its own threads; None launches inline (tests, FakeExecutor)."""
        return self.attempts.launcher

    @launcher.setter
    def launcher(self, launcher: Callable[[list[LaunchRequest]], None] | None) -> None:
        self.attempts.launcher = launcher

    @property
    def log_pool(self) -> LogPool | None:
        """Spare log files, set by the engine for executors that rename them into place."""
        return self.attempts.log_pool

    @log_pool.setter
    def log_pool(self, pool: LogPool | None) -> None:
        self.attempts.log_pool = pool

    @property
    def scratch_done(self) -> Callable[[tuple[str, str | None]], None]:
        """Where ended attempts' scratch folders go (path, keep_as), off the hot path."""
        return self.attempts.scratch_done

    @scratch_done.setter
    def scratch_done(self, handler: Callable[[tuple[str, str | None]], None]) -> None:
        self.attempts.scratch_done = handler

    @property
    def ended_logs(self) -> list[str]:
        """Logs of ended attempts, recyclable once that end is committed (the engine takes them)."""
        return self.attempts.ended_logs

    @ended_logs.setter
    def ended_logs(self, logs: list[str]) -> None:
        self.attempts.ended_logs = logs

    @property
    def launched(self) -> deque[tuple[str, int, int]]:
        """(attempt key, pid, started at) of launches not yet marked RUNNING."""
        return self.attempts.launched

    def launch_one(self, request: LaunchRequest) -> int:
        return self.attempts.launch_one(request)

    def log_path(self, log_stream: str) -> str:
        return self.attempts.log_path(log_stream)

    log_stream_for = staticmethod(Attempts.log_stream_for)

    # -- bookkeeping ----------------------------------------------------------------------------
    def now(self) -> int:
        return self.clock.now_ms()

    def touch(self, job: Job) -> None:
        """Marks a job changed; its row is written at the next commit, encoded then."""
        self._dirty[job.job_id] = job
        job.encoded_state = ""

    def journal(self, job_id: str, at: int, event: str) -> None:
        """An event to commit with the next batch (one that is not a status change)."""
        self._events.append((job_id, at, event))

    def set_status(self, job: Job, status: JobStatus, reason: str | None = None) -> None:
        old = job.status
        job.status = status
        if reason is not None:
            job.status_reason = reason
        now = self.now()
        parent = job.parent
        if parent is not None and parent.summary is not None:
            parent.summary[old.value] -= 1
            parent.summary[status.value] += 1
            parent.summary_at = now
        # One encoding for the event and, unless the job is touched again first, its row.
        state = job.encoded_state = wire.state_json(job)
        self._dirty[job.job_id] = job
        self._events.append((job.job_id, now, "S" + state))
        if status is JobStatus.RUNNABLE:
            self.state.push_runnable(job)
        elif status.is_terminal:
            self.admission.on_terminal(job)

    def next_timer_ms(self) -> int | None:
        timers = self.state.timers
        due = timers[0][0] if timers else None
        if self._dirty or self._events or self.ended_logs:  # ended logs are handed on at a commit
            flush = self._last_commit_ms + self.options.group_commit_ms
            due = flush if due is None else min(due, flush)
        return due

    @property
    def last_commit_ms(self) -> int:
        return self._last_commit_ms

    def has_work(self) -> bool:
        """True when a tick now would do something (the engine then ticks again at once)."""
        return bool(self.exits or self.admissions or self.launched)

    # -- the tick -------------------------------------------------------------------------------
    def tick(self, group_commit_ms: int = 0) -> None:
        """Runs one scheduling round: everything that can happen now happens.

        The changes are committed at the end, or, with `group_commit_ms`, only once that much
        time has passed since the last commit (the engine loop; see the note below).
        """
        attempts = self.attempts
        attempts.drain_launched()
        while self.exits:
            self._end_attempt(self.exits.popleft())
        attempts.drain_launched()  # armed successors taken over just now go RUNNING in this tick
        self.admission.admit_some()
        self._fire_timers()
        self._place()
        if attempts.launches:
            # No commit before launching: every attempt's log file is created by the executor
            # before its process starts, at a path derived from the attempt (log_stream_for),
            # so it is the attempt's durable trace. After a kill -9, an attempt that started
            # (and maybe ended) inside the group-commit window is found by that file and ends
            # as a lost host; it never silently runs again as the same attempt.
            attempts.dispatch()
        if self.arming.enabled:
            self.arming.arm_successors()
        # Group commit: state changes and their events reach SQLite together, at most
        # group_commit_ms after they happen, so one transaction carries many jobs. A crash
        # inside that window loses only transitions, never an accepted job (API calls
        # commit before they return); attempts launched but not yet recorded are found
        # at restart by the executor's orphan scan and end as lost hosts.
        if self.now() - self._last_commit_ms >= group_commit_ms:
            self.commit()

    def commit(self) -> None:
        """Writes pending changes and their events now (callers hold the engine lock)."""
        batch = self.take_batch()
        if batch is not None:
            self.write_batch(batch)

    def commit_durably(self) -> None:
        """`commit`, after any batch the engine loop took earlier has been written (batches land in order)."""
        with self.store.write_lock:
            self.commit()

    def take_batch(self) -> Batch | None:
        """Takes the pending changes as rows, ready to be written without the engine lock.

        A caller that writes the batch later must acquire `store.write_lock` before it
        releases the engine lock, so batches reach the store in the order they were taken.
        """
        self._last_commit_ms = self.now()
        if not self._dirty and not self._events:
            return None
        state = self.state
        state.forget_written_releases()
        state.batches_taken += 1
        job_row = self.store.job_row
        rows = []
        for job in self._dirty.values():
            # An array parent's summary moves with its children without touching it: encode afresh.
            rows.append(job_row(job, job.encoded_state if job.summary is None else ""))
            job.encoded_state = ""  # not kept in memory past the commit
        batch = Batch(rows, self._events, state.batches_taken)
        self._dirty, self._events = {}, []
        return batch

    def write_batch(self, batch: Batch) -> None:
        last_seq = self.store.write_changes(batch.rows, batch.events)
        self.state.batches_written = batch.number  # batches are written in the order they were taken
        if batch.events:
            self.on_commit(last_seq, batch.events)

    # -- attempt ends ---------------------------------------------------------------------------
    def _end_attempt(self, info: ExitInfo) -> None:
        """An attempt ended (or an armed launch was withdrawn): its successor starts, then it is settled."""
        job = self.running.get(info.attempt_key)
        if job is None and self.arming.withdrawn(info):
            return
        successor = self.arming.take_successor(info.attempt_key)
        if job is None or job.status not in LIVE:
            self.running.pop(info.attempt_key, None)
            if successor is not None:
                self.arming.take_over(successor)
            return
        self.attempts.close(job, info)
        if successor is not None:
            self.arming.take_over(successor)  # before this job's own retry can queue it ahead
        self._settle(job, self.attempts.record_end(job, info))

    def _settle(self, job: Job, end: AttemptEnd) -> None:
        """What follows an attempt's end: SUCCEEDED, another attempt (retry.py decides), or FAILED.

        Timeouts, terminations and cancelled jobs are never retried, as on AWS.
        """
        if end.succeeded:
            self.set_status(job, JobStatus.SUCCEEDED, REASON_EXITED)
            return
        retryable = end.cause not in ("timeout", "terminate") and not job.is_cancelled
        if retryable and retry.should_retry(job.sub.retry_strategy, len(job.attempts), status_reason=end.status_reason,
                                            reason=end.reason, exit_code=end.exit_code):
            # PENDING only for an attempt recovered from a crash whose dependencies are unmet again.
            self.set_status(job, JobStatus.PENDING if job.unmet else JobStatus.RUNNABLE, end.status_reason)
        else:
            if end.cause == "terminate":
                job.is_terminated = True
            self.set_status(job, JobStatus.FAILED, end.status_reason)

    def _fire_timers(self) -> None:
        timers = self.state.timers
        now = self.now()
        while timers and timers[0][0] <= now:
            _, kind, key = heapq.heappop(timers)
            if kind == "blocked":
                self._expire_blocked(key)
            else:
                self.attempts.on_timer(kind, key)

    # -- API calls and engine start (control.py) ----------------------------------------------------
    def cancel(self, job: Job, reason: str) -> None:
        self.control.cancel(job, reason)

    def terminate(self, job: Job, reason: str) -> None:
        self.control.terminate(job, reason)

    def recover_lost_attempts(self, jobs: list[Job], orphan_keys: Iterable[str] = ()) -> None:
        self.control.recover_lost_attempts(jobs, orphan_keys)

    def requeue(self, job: Job) -> None:
        """Puts a RUNNABLE job loaded from the store back in its queue."""
        self.state.push_runnable(job)

    def rewire(self, job: Job) -> None:
        """Re-links a PENDING job loaded from the store to the jobs it waits on."""
        self.admission.rewire(job)

    # -- placement ------------------------------------------------------------------------------
    def _place(self) -> None:
        for queue in self.state.queues_by_priority():
            while (job := self.state.head(queue)) is not None:
                res = job.sub.resources
                ce = choose_environment(queue, self.ces, self.ledger, res)
                if ce is None:
                    self._report_blocked(queue, job)
                    break  # FIFO: the head waits, and everything behind it waits too
                if not self.state.release_committed(job):
                    self.commit_durably()  # its dependencies' ends first (see SchedulerState.released)
                self.state.pop_head(queue)
                self.attempts.start(job, ce)

    def resources_changed(self) -> None:
        """Compute environments or queues changed: what was decided under the old settings is redone."""
        self._head_fits.clear()
        self.arming.withdraw_all()

    def _report_blocked(self, queue: JobQueue, job: Job) -> None:
        if job.job_id in self.state.blocked_reported or self._head_fits.get(queue.name) == job.job_id:
            return  # asked already: a head waiting for room is asked on every tick otherwise
        reason = never_fits(queue, self.ces, self.host, job.sub.resources)
        if reason is None:
            self._head_fits[queue.name] = job.job_id
            return
        self.state.blocked_reported.add(job.job_id)
        job.status_reason = reason
        self.touch(job)
        self.journal(job.job_id, self.now(), wire.queue_blocked_event_json(job, queue, self.now()))
        # jobStateTimeLimitActions: a head job blocked for this reason too long is cancelled.
        for action in queue.time_limit_actions:
            if action["state"] == "RUNNABLE" and reason.startswith(action["reason"]):
                due = self.now() + int(action["maxTimeSeconds"]) * 1000
                heapq.heappush(self.state.timers, (due, "blocked", job.job_id))
                break

    def _expire_blocked(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.status is not JobStatus.RUNNABLE or job.job_id not in self.state.blocked_reported \
                or job.armed_on is not None:
            return
        queue = self.queues.get(job.sub.queue)
        for action in queue.time_limit_actions if queue else []:
            if action["state"] == "RUNNABLE" and (job.status_reason or "").startswith(action["reason"]):
                job.is_cancelled = True
                self.set_status(job, JobStatus.FAILED, job.status_reason)
                return
