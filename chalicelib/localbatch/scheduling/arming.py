"""Armed successors: the next attempt for a busy slot is chosen while the slot is still busy.

Why: with short jobs, the time from one attempt's exit to the next one's start was mostly
the engine hearing of the exit, choosing, and answering (a few hundred µs of Python and two
thread wake-ups per job). The spawner can instead hold, for each running attempt X, the
launch of the job the scheduler would give X's resources to (its "successor" Y) and start
Y the moment it reaps X, before the engine hears of either.

What stays AWS Batch: Y is the head of its queue, in the same priority order as placement,
and fits in X's share of its compute environment (vCPUs and memory no larger, no GPUs), so
X's exit frees room for Y whatever else happens. Y stays RUNNABLE, holding no capacity,
until the engine reads X's exit; then it takes X's capacity over and goes STARTING and
RUNNING as a launched job does. Each slot's chain starts in queue order; jobs armed on
different slots start as those slots free, as jobs placed on different hosts do. A CancelJob or TerminateJob for an armed Y asks the
spawner to withdraw it. If the withdrawal arrives first, Y is cancelled or terminated as
a RUNNABLE job is; if X exited first, Y had already started, the race AWS documents for a
cancel that reaches a job after it left RUNNABLE (a terminate then stops it). Changes to
compute environments and queues withdraw every armed launch, so placement is redone under
the new settings. A job that placement would take before an armed one (from a queue of
higher priority, or a retry that keeps its place in its queue) has the armed jobs behind
it withdrawn when it could have their slot, so a chain never holds it back for longer than
the attempt running now. An engine killed meanwhile loses nothing: the spawner starts no armed
launch after its engine is gone, and one started just before is found by its log file.

The Scheduler holds one Arming (with the executor's `arm` when it has one); all under the engine lock.
"""

from __future__ import annotations

from typing import cast

from chalicelib.localbatch.execution.executor import ArmingExecutor, Executor, ExitInfo
from chalicelib.localbatch.model import Job, JobStatus
from chalicelib.localbatch.scheduling.attempts import LIVE, Attempts
from chalicelib.localbatch.scheduling.state import SchedulerState, Transitions, attempt_key

# Successors per running attempt, as a chain (X -> Y -> Z): one is not enough when a job
# is shorter than the engine's reaction to an exit under load, since Z must be armed on Y
# before Y ends for the slot never to wait.
CHAIN_DEPTH = 3
REQUEUE = ("requeue", "")


class Arming:
    """Arms, takes over and withdraws successor launches."""

    def __init__(self, state: SchedulerState, transitions: Transitions, attempts: Attempts,
                 executor: Executor) -> None:
        self.state = state
        self.transitions = transitions
        self.attempts = attempts
        self.executor = executor
        # Only some executors can hold a launch (the spawner); without `arm` nothing is ever armed.
        self._holder = cast(ArmingExecutor, executor) if hasattr(executor, "arm") else None
        self._spares: dict[str, str] = {}  # armed attempt key -> the spare log it carries
        self._streams: dict[str, str] = {}  # armed attempt key -> its log stream (hashed once, here)

    @property
    def enabled(self) -> bool:
        return self._holder is not None

    def arm_successors(self) -> None:
        """Arms the queue heads that did not fit on running attempts that have no successor yet."""
        if self._holder is None:
            return
        state = self.state
        if state.armed:
            self._withdraw_outranked()
        if len(state.armed) >= CHAIN_DEPTH * len(state.running):
            return
        hosts = [(key, job) for key, job in state.running.items()
                 if key not in state.armed and job.status in LIVE and job.stop_cause is None and not job.gpu_ids]
        hosts += [(key, job) for key, job in ((attempt_key(job), job) for job in state.armed.values())
                  if key not in state.armed and job.disarm_action is None]
        for queue in state.queues_by_priority():
            ce_names = {name for _, name in queue.ce_order}
            while hosts and (job := state.head(queue)) is not None:
                host = self._host_for(job, ce_names, hosts)
                if host is None:
                    break  # FIFO: the head waits for a slot it fits, and the rest behind it
                key, running = host
                if not state.release_committed(job):
                    self.transitions.commit_durably()  # its dependencies' ends first (state.released)
                if not self._arm_on(key, running, job):
                    break  # the executor refused it: placement launches it and reports why
                state.pop_head(queue)
                hosts.remove(host)
            if not hosts:
                return

    def _rank(self, job: Job) -> tuple[float, ...]:
        """Where placement takes the job: queue priority, then queue, then submission order."""
        queue = self.state.queues.get(job.sub.queue)
        if queue is None:
            return (float("inf"),)
        return (-queue.priority, queue.seq, job.sub.seq, -1 if job.index is None else job.index)

    def _withdraw_outranked(self) -> None:
        """Withdraws armed jobs that a waiting job ranks before, when it could have their slot."""
        state = self.state
        armed = [(self._rank(job), job) for job in state.armed.values() if job.disarm_action is None]
        if not armed:
            return
        latest = max(rank for rank, _ in armed)
        for queue in state.queues_by_priority():
            head = state.head(queue)
            if head is None:
                continue
            rank = self._rank(head)
            if rank >= latest:
                return  # queues come in priority order: every later head ranks lower still
            slots = [*state.running.items(), *((attempt_key(job), job) for job in state.armed.values())]
            if self._host_for(head, {name for _, name in queue.ce_order}, slots) is None:
                continue  # it could not take an armed job's slot anyway
            for job_rank, job in armed:
                if job_rank > rank:
                    self.withdraw(job, REQUEUE)
            return

    def _host_for(self, job: Job, ce_names: set[str], hosts: list[tuple[str, Job]]) -> tuple[str, Job] | None:
        res = job.sub.resources
        if res.gpus:
            return None
        for host in hosts:
            held = host[1].sub.resources
            ce = self.state.ces.get(host[1].placed_ce or "")
            if (ce is not None and ce.name in ce_names and ce.state == "ENABLED"
                    and res.vcpus <= held.vcpus + 1e-9 and res.memory_mib <= held.memory_mib):
                return host
        return None

    def _arm_on(self, host_key: str, host: Job, job: Job) -> bool:
        assert self._holder is not None
        key = attempt_key(job)
        stream = self.attempts.log_stream_for(job, job.attempt_number)
        request = self.attempts.launch_request(job, key, ce_name=host.placed_ce or "", log_stream=stream)
        if not self._holder.arm(host_key, request):
            self.attempts.return_workdir(job)
            self.attempts.return_spare(request.spare_log)
            return False
        if request.spare_log:
            self._spares[key] = request.spare_log
        self._streams[key] = stream
        job.placed_ce = host.placed_ce  # scheduling state only: the job shows nothing until it starts
        job.armed_on = host_key
        self.state.armed[host_key] = job
        return True

    def take_successor(self, host_key: str) -> Job | None:
        """The job armed on attempt `host_key`, which has just ended (the spawner started it, if any)."""
        return self.state.armed.pop(host_key, None)

    def take_over(self, job: Job) -> None:
        """The spawner started armed `job` in place of the attempt that just ended: account for it."""
        job.armed_on = None
        action, job.disarm_action = job.disarm_action, None
        key = attempt_key(job)
        self._spares.pop(key, None)  # renamed into place by the spawner
        stream = self._streams.pop(key, None)
        if job.status is not JobStatus.RUNNABLE:  # defensive: it left RUNNABLE some other way
            self.executor.stop(key, 0)
            return
        ce = self.state.ces.get(job.placed_ce or "")
        if ce is None:  # its environment was deleted meanwhile (deleting one withdraws first)
            self.executor.stop(key, 0)
            return
        self.attempts.start(job, ce, launched=True, log_stream=stream)
        self.state.running[key] = job
        if action is not None and action[0] == "terminate":
            job.stop_cause, job.stop_reason = "terminate", action[1]
        self.attempts.launched.append((key, 0, self.transitions.now()))

    def withdrawn(self, info: ExitInfo) -> bool:
        """Handles the end of an armed launch that never started (withdrawn, or its spawner lost).

        Returns False when `info` is not about an armed job.
        """
        job = self.state.jobs.get(info.attempt_key.rsplit("#", 1)[0])
        if job is None or job.armed_on is None or attempt_key(job) != info.attempt_key:
            return False
        if self.state.armed.get(job.armed_on) is job:
            del self.state.armed[job.armed_on]
        job.armed_on = None
        job.placed_ce = None
        self.attempts.return_workdir(job)
        self.attempts.return_spare(self._spares.pop(info.attempt_key, ""))
        self._streams.pop(info.attempt_key, None)
        action, job.disarm_action = job.disarm_action, None
        if action is None or action is REQUEUE:
            self.state.push_runnable(job)  # same place in its queue as before: FIFO is kept
        elif action[0] == "cancel":
            job.is_cancelled = True
            self.transitions.set_status(job, JobStatus.FAILED, action[1])
        else:
            job.is_terminated = True
            self.transitions.set_status(job, JobStatus.FAILED, action[1])
        return True

    def withdraw(self, job: Job, action: tuple[str, str]) -> None:
        """Asks the spawner to drop armed `job` (and what is armed behind it).

        `action` applies if it does: ("cancel" | "terminate", reason), or REQUEUE.
        """
        if job.disarm_action in (None, REQUEUE) or action[0] == "terminate":
            job.disarm_action = action
        # The spawner drops the chain behind it too: nothing may be armed on those any more,
        # or it would start at once on a slot that is not free.
        behind = self.state.armed.get(attempt_key(job))
        while behind is not None:
            if behind.disarm_action is None:
                behind.disarm_action = REQUEUE
            behind = self.state.armed.get(attempt_key(behind))
        if job.armed_on is not None and self._holder is not None:  # armed_on is set only with a holder
            self._holder.disarm(job.armed_on)

    def withdraw_all(self) -> None:
        """Withdraws every armed launch, to be placed again under new settings."""
        for job in list(self.state.armed.values()):
            self.withdraw(job, REQUEUE)
