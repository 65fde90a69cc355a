"""CancelJob and TerminateJob, and recovery of attempts lost with a previous engine.

The Scheduler holds one Control; API calls and engine start reach it through the Scheduler,
under the engine lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from chalicelib.localbatch.execution.executor import Executor, ExitInfo
from chalicelib.localbatch.ids import hex_id
from chalicelib.localbatch.model import Job, JobStatus
from chalicelib.localbatch.scheduling.arming import Arming
from chalicelib.localbatch.scheduling.attempts import Attempts
from chalicelib.localbatch.scheduling.state import EngineOptions, SchedulerState, Transitions, attempt_key


class Control:
    """Acts on jobs from outside the tick: API calls and engine start."""

    def __init__(self, state: SchedulerState, transitions: Transitions, attempts: Attempts, arming: Arming,
                 executor: Executor, options: EngineOptions, end_attempt: Callable[[ExitInfo], None]) -> None:
        self.state = state
        self.transitions = transitions
        self.attempts = attempts
        self.arming = arming
        self.executor = executor
        self.options = options
        self.end_attempt = end_attempt  # the Scheduler's: an ended attempt is settled in one place

    # -- cancel and terminate -------------------------------------------------------------------
    def _stop_array(self, parent: Job, reason: str, flag: str, each_child: Callable[[Job, str], None]) -> None:
        """CancelJob/TerminateJob of an array parent: `flag` ("is_cancelled"/"is_terminated") is set
        on it now (a parent not spawned yet fails at once), then each child is handled alone."""
        if parent.status is JobStatus.SUBMITTED:
            setattr(parent, flag, True)
            self.transitions.set_status(parent, JobStatus.FAILED, reason)
        elif not parent.status.is_terminal:
            setattr(parent, flag, True)
            parent.cancel_reason = reason
            self.transitions.touch(parent)
        for child in parent.children or []:
            each_child(child, reason)

    def cancel(self, job: Job, reason: str) -> None:
        if job.is_parent:
            self._stop_array(job, reason, "is_cancelled", self.cancel)
            return
        if job.armed_on is not None:
            self.arming.withdraw(job, ("cancel", reason))  # decided when the spawner answers (arming.py)
        elif job.status in (JobStatus.SUBMITTED, JobStatus.RUNNABLE):
            job.is_cancelled = True
            self.transitions.set_status(job, JobStatus.FAILED, reason)
        elif job.status is JobStatus.PENDING:
            # AWS fails a cancelled PENDING job only once its dependencies complete.
            job.cancel_reason = reason
            job.is_cancelled = True
            self.transitions.touch(job)
            if job.unmet == 0:
                self.transitions.set_status(job, JobStatus.FAILED, reason)
        # STARTING, RUNNING and terminal jobs: CancelJob is a no-op that still succeeds.

    def terminate(self, job: Job, reason: str) -> None:
        if job.is_parent:
            self._stop_array(job, reason, "is_terminated", self.terminate)
            return
        if job.armed_on is not None:
            self.arming.withdraw(job, ("terminate", reason))  # decided when the spawner answers (arming.py)
        elif job.status in (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE):
            job.is_terminated = True
            self.transitions.set_status(job, JobStatus.FAILED, reason)
        elif job.status in (JobStatus.STARTING, JobStatus.RUNNING):
            key = attempt_key(job)
            if job.stop_cause is None or job.stop_cause == "reclaim":
                job.stop_cause, job.stop_reason = "terminate", reason
            if key in self.state.running:
                self.executor.stop(key, self.options.kill_grace_seconds)
            else:  # placed but not launched yet
                self.attempts.release(job)
                job.is_terminated = True
                self.transitions.set_status(job, JobStatus.FAILED, reason)

    # -- recovery -------------------------------------------------------------------------------
    def _unrecorded_start(self, job: Job) -> int:
        """When an attempt whose start never reached the store began: its log file was created (or
        renamed into place) just before its process started. job.started_at is the previous
        attempt's, so using it would make the two attempts overlap in the job's history."""
        now = self.transitions.now()
        previous_end = job.attempts[-1]["stoppedAt"] if job.attempts else 0
        try:
            created = int(os.stat(self.attempts.log_path(job.log_stream or "")).st_ctime * 1000)
        except OSError:
            created = now
        return int(min(max(created, previous_end), now))

    def recover_lost_attempts(self, jobs: list[Job], orphan_keys: Iterable[str] = ()) -> None:
        """Ends attempts that were alive when the engine died the way AWS ends them when a host is lost.

        `jobs` are those recorded as STARTING/RUNNING; `orphan_keys` are attempts the executor
        found (and killed) still running, which may belong to jobs whose launch was not
        committed yet: those end as lost hosts too instead of silently running again.
        """
        state = self.state
        recorded = {job.job_id for job in jobs}
        unrecorded = [state.jobs.get(key.rsplit("#", 1)[0]) for key in orphan_keys]
        waiting = (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE)
        log_path, log_stream_for = self.attempts.log_path, self.attempts.log_stream_for
        unrecorded += [job for job in state.jobs.values() if job.status in waiting and not job.is_parent
                       and os.path.exists(log_path(log_stream_for(job, job.attempt_number)))]
        for job in unrecorded:
            if job is None or job.job_id in recorded or job.status not in waiting:
                continue
            # Launched inside the last group-commit window: its STARTING/RUNNING never reached the store.
            job.status = JobStatus.RUNNING
            job.instance_id = job.instance_id or "i-" + hex_id(17)
            job.log_stream = log_stream_for(job, job.attempt_number)
            job.started_at = self._unrecorded_start(job)
            jobs.append(job)
            recorded.add(job.job_id)
        for job in jobs:
            res = job.sub.resources
            job.gpu_ids = state.ledger.take(res)
            ce = state.ces.get(job.placed_ce or "")
            if ce is not None:
                ce.used_vcpus += res.vcpus
            key = attempt_key(job)
            state.running[key] = job
            if job.stop_cause is None:
                job.stop_cause = "reclaim"
            self.end_attempt(ExitInfo(key, None, None, True))
