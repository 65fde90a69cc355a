"""Attempts: placement onto an environment, launch, RUNNING, attempt timers, and an attempt's end.

The Scheduler holds one Attempts; it decides what follows an end (SUCCEEDED, a retry or
FAILED), Attempts only records how the attempt ended. All under the engine lock.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.localbatch import arns
from chalicelib.localbatch.execution.executor import Executor, ExitInfo, LaunchRequest
from chalicelib.localbatch.execution.logpool import LogPool
from chalicelib.localbatch.ids import hex_id
from chalicelib.localbatch.model import (
    REASON_EXITED,
    REASON_START_FAILED,
    REASON_TIMEOUT,
    ComputeEnvironment,
    Job,
    JobStatus,
    host_terminated_reason,
)
from chalicelib.localbatch.scheduling.state import EngineOptions, SchedulerState, Transitions, attempt_key

RECLAIM_TAG = "conveyor:reclaim-rate"
LIVE = (JobStatus.STARTING, JobStatus.RUNNING)


def _is_empty_dir(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as recorded in the job's attempts."""

    cause: str | None  # why the engine stopped it ("timeout", "terminate", "reclaim"), None if it ended alone
    status_reason: str
    exit_code: int | None
    reason: str | None  # the container's reason (OOM, start error), if any
    started: bool

    @property
    def succeeded(self) -> bool:
        return self.cause is None and self.started and self.exit_code == 0


class Attempts:
    """One attempt's life, from placement to its end, and the files it leaves (scratch, log)."""

    def __init__(self, state: SchedulerState, transitions: Transitions, executor: Executor,
                 options: EngineOptions, rng: random.Random, data_dir: Path, exits: deque[ExitInfo]) -> None:
        self.state = state
        self.transitions = transitions
        self.executor = executor
        self.options = options
        self.random = rng
        self.exits = exits  # a failed start is reported here, as its exit
        self._work_root = str(data_dir / "work")  # plain strings: pathlib costs show up per job
        self._log_root = str(data_dir / "logs")
        self.launches: list[Job] = []  # placed in this tick, launched at its end
        self.launched: deque[tuple[str, int, int]] = deque()  # (attempt key, pid, started at)
        # Set by the engine to fork on its own threads; None launches inline (tests, FakeExecutor).
        self.launcher: Callable[[list[LaunchRequest]], None] | None = None
        # Spare log files (logpool.py), set by the engine for executors that rename them into place.
        self.log_pool: LogPool | None = None
        self.ended_logs: list[str] = []  # logs of ended attempts, recyclable once that end is committed
        # (path, keep_as): the engine renames a failed attempt's scratch to keep_as (kept for
        # inspection) or, with None, deletes a succeeded attempt's leftovers, off the hot path.
        self.scratch_done: Callable[[tuple[str, str | None]], None] = lambda item: None
        self._free_scratch: list[str] = []
        self._scratch_seq = 0
        self._boot = hex_id(6)  # scratch names never collide with a previous engine's leftovers
        self.reclaims: set[str] = set()  # attempt keys drawn to lose their host (see mark_running)

    # -- placement and launch -------------------------------------------------------------------
    def start(self, job: Job, ce: ComputeEnvironment, launched: bool = False, log_stream: str | None = None) -> None:
        """Places the job on `ce` (STARTING); `launched`: its process was started already (armed),
        with `log_stream` (log_stream_for, computed when it was armed)."""
        res = job.sub.resources
        job.gpu_ids = self.state.ledger.take(res)
        ce.used_vcpus += res.vcpus
        job.placed_ce = ce.name
        job.instance_id = "i-" + hex_id(17)
        job.exit_code = None
        job.container_reason = None
        job.stop_cause = None
        job.log_stream = log_stream or self.log_stream_for(job, job.attempt_number)
        self.state.blocked_reported.discard(job.job_id)
        job.status_reason = None
        self.transitions.set_status(job, JobStatus.STARTING)
        if not launched:
            self.launches.append(job)

    def dispatch(self) -> None:
        """Launches the attempts placed in this tick."""
        batch = []
        launches, self.launches = self.launches, []
        for job in launches:
            if job.status is not JobStatus.STARTING:
                continue  # terminated between placement and launch
            key = attempt_key(job)
            self.state.running[key] = job
            batch.append(self.launch_request(job, key))
        if self.launcher is not None:
            self.launcher(batch)  # the engine forks on its own threads, in parallel
            return
        for request in batch:
            self.launched.append((request.attempt_key, self.launch_one(request), self.transitions.now()))
        self.drain_launched()

    def launch_one(self, request: LaunchRequest) -> int:
        """Starts one attempt; any launch failure becomes the attempt's failed start.

        An executor that can hand a launch off without waiting (the spawner) is used that
        way: the tick never blocks on a fork, and a failed start arrives as an exit.
        """
        launch = getattr(self.executor, "launch_nowait", None) or self.executor.launch
        try:
            return int(launch(request))
        except Exception as err:
            self.exits.append(ExitInfo(request.attempt_key, None, f"CannotStartContainerError: {err}", False))
            return -1

    def drain_launched(self) -> None:
        """Attempts whose processes started go RUNNING."""
        while self.launched:
            key, pid, started_at = self.launched.popleft()
            job = self.state.running.get(key)
            if job is None or pid < 0 or job.status is not JobStatus.STARTING:
                continue  # failed starts arrive as exits; ended attempts need nothing
            self.mark_running(job, key, started_at)
            if job.stop_cause == "terminate":
                self.executor.stop(key, self.options.kill_grace_seconds)

    def mark_running(self, job: Job, key: str, started_at: int) -> None:
        job.started_at = started_at
        self.transitions.set_status(job, JobStatus.RUNNING)
        if job.sub.timeout_seconds:
            heapq.heappush(self.state.timers, (started_at + job.sub.timeout_seconds * 1000, "timeout", key))
        rate = self._reclaim_rate(job.placed_ce)
        if rate > 0 and self.random.random() < rate:
            # The attempt loses its host whatever its length: one that ends before the drawn
            # moment still ends as reclaimed (its host was gone before its exit was reported).
            self.reclaims.add(key)
            delay = self.random.uniform(0.05, self.options.reclaim_window_seconds)
            heapq.heappush(self.state.timers, (started_at + int(delay * 1000), "reclaim", key))

    def _reclaim_rate(self, ce_name: str | None) -> float:
        ce = self.state.ces.get(ce_name or "")
        if ce is None or ce.resource_type not in ("SPOT", "FARGATE_SPOT"):
            return 0.0
        tagged = ce.tags.get(RECLAIM_TAG)
        try:
            return float(tagged) if tagged is not None else self.options.spot_reclaim_rate
        except ValueError:
            return self.options.spot_reclaim_rate

    def launch_request(self, job: Job, key: str, ce_name: str | None = None,
                       log_stream: str | None = None) -> LaunchRequest:
        """What to start for the job's attempt; an armed launch passes the values it will get at start."""
        sub = job.sub
        env = {item["name"]: item.get("value", "") for item in sub.container.get("environment", [])}
        env.update({
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(job.attempt_number),
            "AWS_BATCH_JQ_NAME": sub.queue,
            "AWS_BATCH_CE_NAME": (job.placed_ce if ce_name is None else ce_name) or "",
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in job.gpu_ids),
        })
        if job.index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.index)
        return LaunchRequest(
            attempt_key=key,
            argv=tuple(sub.container.get("command") or ()),
            env=env,
            workdir=self.workdir(job),
            log_path=self.log_path((job.log_stream if log_stream is None else log_stream) or ""),
            memory_mib=sub.resources.memory_mib,
            vcpus=sub.resources.vcpus,
            gpu_ids=job.gpu_ids,
            image=sub.container.get("image"),
            spare_log=self.log_pool.take() if self.log_pool is not None else "",
        )

    # -- an attempt's files -----------------------------------------------------------------------
    def workdir(self, job: Job) -> str:
        """A fresh, empty scratch folder for the job's next attempt.

        Empty folders left by succeeded attempts are handed out again: on this kind of disk
        creating and removing a folder per job costs more than the scheduling itself.
        """
        if not job.workdir:
            if self._free_scratch:
                job.workdir = self._free_scratch.pop()
            else:
                self._scratch_seq += 1
                job.workdir = f"{self._work_root}/scratch-{self._boot}-{self._scratch_seq}"
        return job.workdir

    @staticmethod
    def log_stream_for(job: Job, attempt: int) -> str:
        """`<definition name>/default/<task id>`, the task id derived from the attempt.

        Deterministic on purpose: the log file at this path is the attempt's durable trace.
        """
        definition = job.sub.job_definition.rsplit("/", 1)[-1].rsplit(":", 1)[0]
        task_id = hashlib.blake2b(f"{job.job_id}#{attempt}".encode(), digest_size=16).hexdigest()
        return f"{definition[:200]}/default/{task_id}"

    def log_path(self, log_stream: str) -> str:
        return f"{self._log_root}/{log_stream}"

    def return_spare(self, path: str) -> None:
        if path and self.log_pool is not None:
            self.log_pool.give_back(path)  # never launched: the file is still a spare

    def return_workdir(self, job: Job) -> None:
        workdir, job.workdir = job.workdir, ""
        if workdir:
            self._free_scratch.append(workdir)  # never handed to a process: still empty (or absent)

    # -- timers ---------------------------------------------------------------------------------
    def on_timer(self, kind: str, key: str) -> None:
        """A "timeout" or "reclaim" timer of attempt `key` is due: the attempt is stopped."""
        if kind == "reclaim":
            self.reclaims.discard(key)
        job = self.state.running.get(key)
        if job is None or job.stop_cause is not None:
            return
        job.stop_cause = kind
        grace = 0.0 if kind == "reclaim" else self.options.kill_grace_seconds
        self.executor.stop(key, grace)

    # -- attempt ends ---------------------------------------------------------------------------
    def close(self, job: Job, info: ExitInfo) -> None:
        """The live attempt `info` is about has exited: it leaves the running set and frees its capacity."""
        if job.status is JobStatus.STARTING and info.started:
            self.mark_running(job, info.attempt_key, self.transitions.now())  # exited before its launch was noted
        del self.state.running[info.attempt_key]
        if info.attempt_key in self.reclaims:  # drawn to lose its host, and ended before that moment
            self.reclaims.discard(info.attempt_key)
            if job.stop_cause is None and info.started:
                job.stop_cause = "reclaim"
        self.release(job, succeeded=job.stop_cause is None and info.started and info.exit_code == 0)
        if job.log_stream and self.log_pool is not None:
            self.ended_logs.append(self.log_path(job.log_stream))

    def record_end(self, job: Job, info: ExitInfo) -> AttemptEnd:
        """Adds the closed attempt to the job's attempts, with AWS's status reason for how it ended."""
        cause = job.stop_cause
        exit_code, reason = info.exit_code, info.reason
        if cause == "reclaim":
            status_reason, exit_code, reason = host_terminated_reason(job.instance_id), None, None
        elif cause == "timeout":
            status_reason = REASON_TIMEOUT
        elif cause == "terminate":
            status_reason = job.stop_reason or "Terminated"
        elif not info.started:
            status_reason = REASON_START_FAILED
        else:
            status_reason = REASON_EXITED
        self._record_attempt(job, self.transitions.now(), status_reason, exit_code, reason)
        return AttemptEnd(cause, status_reason, exit_code, reason, info.started)

    def _record_attempt(self, job: Job, now: int, status_reason: str, exit_code: int | None,
                        reason: str | None) -> None:
        container: dict[str, Any] = {
            "containerInstanceArn": f"arn:aws:ecs:{arns.REGION}:{arns.ACCOUNT}:container-instance/local/"
                                    f"{job.instance_id}",
            "taskArn": f"arn:aws:ecs:{arns.REGION}:{arns.ACCOUNT}:task/local/{(job.log_stream or '').rsplit('/', 1)[-1]}",
            "logStreamName": job.log_stream,
            "networkInterfaces": [],
        }
        if exit_code is not None:
            container["exitCode"] = exit_code
        if reason:
            container["reason"] = reason
        job.attempts.append({"container": container, "startedAt": job.started_at or now, "stoppedAt": now,
                             "statusReason": status_reason, "taskProperties": []})
        job.stopped_at = now
        job.exit_code = exit_code
        job.container_reason = reason

    def release(self, job: Job, succeeded: bool = False) -> None:
        """Gives the attempt's capacity back and hands its scratch folder on."""
        ce = self.state.ces.get(job.placed_ce or "")
        if ce is not None:
            ce.used_vcpus = max(0.0, ce.used_vcpus - job.sub.resources.vcpus)
        self.state.ledger.give_back(job.sub.resources, job.gpu_ids)
        job.gpu_ids = ()
        workdir, job.workdir = job.workdir, ""
        if not workdir:
            return
        if not succeeded:
            self.scratch_done((workdir, f"{job.job_id.replace(':', '_')}-attempt-{job.attempt_number}"))
        elif _is_empty_dir(workdir):
            self._free_scratch.append(workdir)
        else:
            self.scratch_done((workdir, None))
