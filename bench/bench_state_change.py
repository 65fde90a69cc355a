"""Bench: engine CPU per job state change (status change, event snapshot, job row, SQLite write).

Drives the scheduler's bookkeeping directly, without processes or a tick: jobs submitted
through the in-process client go SUBMITTED -> PENDING -> RUNNABLE -> STARTING -> RUNNING
-> SUCCEEDED in waves, with the field changes the attempt path makes, and the pending
changes are committed the way the engine's group commit groups them (PENDING; RUNNABLE
and STARTING in one tick; RUNNING; SUCCEEDED). It measures what every state change costs
on the engine's GIL-held path: `set_status`, `take_batch` and `write_batch`.

Usage: python bench/bench_state_change.py [--jobs 2000] [--wave 20] [--runs 5]
Writes bench/results/state_change.json. Short (seconds); single-threaded.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, write_result
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.model import REASON_EXITED, Job, JobStatus
from chalicelib.localbatch.scheduling.capacity import HostCapacity

CHANGES_PER_JOB = 5


class NullExecutor:
    """Never runs anything: the bench moves jobs through their states by hand."""

    def set_exit_callback(self, callback: Any) -> None:
        pass

    def kill_orphans(self) -> list[str]:
        return []

    def running(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def _submit(engine: Engine, count: int) -> list[Job]:
    batch = engine.client()
    ids = [batch.submit_job(jobName=f"j{n}", jobQueue="default", jobDefinition="jd")["jobId"]
           for n in range(count)]
    return [engine.scheduler.jobs[job_id] for job_id in ids]


def _one_run(engine: Engine, jobs: list[Job], wave: int) -> tuple[float, float, float]:
    """Seconds for all state changes of `jobs` (wall, then CPU), and the wall part spent in write_batch."""
    s = engine.scheduler
    write_s = 0.0

    def commit() -> None:
        nonlocal write_s
        batch = s.take_batch()
        if batch is not None:
            started = time.perf_counter()
            s.write_batch(batch)
            write_s += time.perf_counter() - started

    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    for first in range(0, len(jobs), wave):
        group = jobs[first:first + wave]
        for job in group:
            s.set_status(job, JobStatus.PENDING)
        commit()
        for job in group:
            s.set_status(job, JobStatus.RUNNABLE)
            # What _start does before STARTING.
            job.placed_ce = "local"
            job.instance_id = "i-0123456789abcdef0"
            job.log_stream = f"jd/default/{job.job_id.replace('-', '')}"
            job.status_reason = None
            s.set_status(job, JobStatus.STARTING)
        commit()
        for job in group:
            job.started_at = s.now()
            s.set_status(job, JobStatus.RUNNING)
        commit()
        for job in group:
            now = s.now()
            job.attempts.append({"container": {"containerInstanceArn": "arn:aws:ecs:us-east-1:000000000000:"
                                               "container-instance/local/i-0123456789abcdef0",
                                               "taskArn": "arn:aws:ecs:us-east-1:000000000000:task/local/x",
                                               "logStreamName": job.log_stream, "networkInterfaces": [],
                                               "exitCode": 0},
                                 "startedAt": job.started_at, "stoppedAt": now, "statusReason": REASON_EXITED,
                                 "taskProperties": []})
            job.stopped_at, job.exit_code = now, 0
            s.set_status(job, JobStatus.SUCCEEDED, REASON_EXITED)
        commit()
    return time.perf_counter() - started, time.process_time() - cpu_started, write_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--wave", type=int, default=20, help="jobs per group commit")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="conveyor-bench-state-")
    engine = Engine(data_dir, host=HostCapacity(vcpus=2, memory_mib=4096, gpus=0), executor=NullExecutor())
    try:
        engine.client().register_job_definition(
            jobDefinitionName="jd", type="container",
            containerProperties={"image": "busybox", "command": ["true"],
                                 "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                          {"type": "MEMORY", "value": "64"}]})
        totals, cpus, writes = [], [], []
        for _ in range(args.runs):
            jobs = _submit(engine, args.jobs)
            with engine.lock:
                total, cpu, write = _one_run(engine, jobs, args.wave)
            totals.append(total)
            cpus.append(cpu)
            writes.append(write)
        changes = args.jobs * CHANGES_PER_JOB
        per_change = [t / changes * 1e6 for t in totals]
        per_write = [w / changes * 1e6 for w in writes]
        per_cpu = [c / changes * 1e6 for c in cpus]
        figures = {
            "jobs": args.jobs, "wave": args.wave, "runs": args.runs, "changes_per_run": changes,
            "us_per_change_median": round(median(per_change), 2),
            "us_per_change_runs": [round(x, 2) for x in per_change],
            "cpu_us_per_change_median": round(median(per_cpu), 2),
            "us_per_change_in_write_batch_median": round(median(per_write), 2),
            "us_per_change_outside_write_median": round(median([t - w for t, w in zip(per_change, per_write)]), 2),
        }
        print(f"{changes} state changes per run, {args.runs} runs: "
              f"{figures['us_per_change_median']} us/change (median; CPU {figures['cpu_us_per_change_median']} us), "
              f"of which "
              f"{figures['us_per_change_in_write_batch_median']} in write_batch, "
              f"{figures['us_per_change_outside_write_median']} in set_status/take_batch")
        write_result("state_change", figures)
    finally:
        engine.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
