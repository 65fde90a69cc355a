"""CancelJob and TerminateJob, recovery of attempts lost with a previous engine, and reloading.

Part of the Scheduler (mixed in); it works on the scheduler's state under the engine lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from chalicelib.localbatch.execution.executor import ExitInfo
from chalicelib.localbatch.ids import hex_id
from chalicelib.localbatch.model import Job, JobStatus


class ControlMixin:
    """Scheduler methods that act on jobs from outside the tick: API calls and engine start."""

    # -- cancel and terminate -------------------------------------------------------------------
    def _stop_array(self, parent: Job, reason: str, flag: str, each_child: Callable[[Job, str], None]) -> None:
        """CancelJob/TerminateJob of an array parent: `flag` ("is_cancelled"/"is_terminated") is set
        on it now (a parent not spawned yet fails at once), then each child is handled alone."""
        if parent.status is JobStatus.SUBMITTED:
            setattr(parent, flag, True)
            self.set_status(parent, JobStatus.FAILED, reason)
        elif not parent.status.is_terminal:
            setattr(parent, flag, True)
            parent.cancel_reason = reason
            self._touch(parent)
        for child in parent.children or []:
            each_child(child, reason)

    def cancel(self, job: Job, reason: str) -> None:
        if job.is_parent:
            self._stop_array(job, reason, "is_cancelled", self.cancel)
            return
        if job.armed_on is not None:
            self.withdraw(job, ("cancel", reason))  # decided when the spawner answers (arming.py)
        elif job.status in (JobStatus.SUBMITTED, JobStatus.RUNNABLE):
            job.is_cancelled = True
            self.set_status(job, JobStatus.FAILED, reason)
        elif job.status is JobStatus.PENDING:
            # AWS fails a cancelled PENDING job only once its dependencies complete.
            job.cancel_reason = reason
            job.is_cancelled = True
            self._touch(job)
            if job.unmet == 0:
                self.set_status(job, JobStatus.FAILED, reason)
        # STARTING, RUNNING and terminal jobs: CancelJob is a no-op that still succeeds.

    def terminate(self, job: Job, reason: str) -> None:
        if job.is_parent:
            self._stop_array(job, reason, "is_terminated", self.terminate)
            return
        if job.armed_on is not None:
            self.withdraw(job, ("terminate", reason))  # decided when the spawner answers (arming.py)
        elif job.status in (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE):
            job.is_terminated = True
            self.set_status(job, JobStatus.FAILED, reason)
        elif job.status in (JobStatus.STARTING, JobStatus.RUNNING):
            key = self.attempt_key(job)
            if job.stop_cause is None or job.stop_cause == "reclaim":
                job.stop_cause, job.stop_reason = "terminate", reason
            if key in self.running:
                self.executor.stop(key, self.options.kill_grace_seconds)
            else:  # placed but not launched yet
                self._release(job)
                job.is_terminated = True
                self.set_status(job, JobStatus.FAILED, reason)

    # -- recovery -------------------------------------------------------------------------------
    def recover_lost_attempts(self, jobs: list[Job], orphan_keys: list[str] = ()) -> None:  # type: ignore[assignment]
        """Ends attempts that were alive when the engine died the way AWS ends them when a host is lost.

        `jobs` are those recorded as STARTING/RUNNING; `orphan_keys` are attempts the executor
        found (and killed) still running, which may belong to jobs whose launch was not
        committed yet: those end as lost hosts too instead of silently running again.
        """
        recorded = {job.job_id for job in jobs}
        unrecorded = [self.jobs.get(key.rsplit("#", 1)[0]) for key in orphan_keys]
        waiting = (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE)
        unrecorded += [job for job in self.jobs.values() if job.status in waiting and not job.is_parent
                       and os.path.exists(self.log_path(self.log_stream_for(job, job.attempt_number)))]
        for job in unrecorded:
            if job is None or job.job_id in recorded or job.status not in waiting:
                continue
            # Launched inside the last group-commit window: its STARTING/RUNNING never reached the store.
            job.status = JobStatus.RUNNING
            job.instance_id = job.instance_id or "i-" + hex_id(17)
            job.log_stream = self.log_stream_for(job, job.attempt_number)
            job.started_at = self._unrecorded_start(job)
            jobs.append(job)
            recorded.add(job.job_id)
        for job in jobs:
            res = job.sub.resources
            job.gpu_ids = self.ledger.take(res)
            ce = self.ces.get(job.placed_ce or "")
            if ce is not None:
                ce.used_vcpus += res.vcpus
            key = self.attempt_key(job)
            self.running[key] = job
            if job.stop_cause is None:
                job.stop_cause = "reclaim"
            self._end_attempt(ExitInfo(key, None, None, True))

    def _unrecorded_start(self, job: Job) -> int:
        """When an attempt whose start never reached the store began: its log file was created (or
        renamed into place) just before its process started. job.started_at is the previous
        attempt's, so using it would make the two attempts overlap in the job's history."""
        previous_end = job.attempts[-1]["stoppedAt"] if job.attempts else 0
        try:
            created = int(os.stat(self.log_path(job.log_stream or "")).st_ctime * 1000)
        except OSError:
            created = self.now()
        return min(max(created, previous_end), self.now())

    # -- loading ----------------------------------------------------------------------------------
    def requeue(self, job: Job) -> None:
        """Puts a RUNNABLE job loaded from the store back in its queue."""
        self._push_runnable(job)

    def rewire(self, job: Job) -> None:
        """Re-links a PENDING job loaded from the store to the jobs it waits on."""
        self._wire_dependencies(job, self._targets(job))
        if job.status is JobStatus.PENDING and job.unmet == 0:
            if job.cancel_reason:
                self.set_status(job, JobStatus.FAILED, job.cancel_reason)
            else:
                self.set_status(job, JobStatus.RUNNABLE)
