"""Bench: 2,001 `true` processes through ProcessExecutor / SpawnerExecutor on 2 slots vs a plain thread pool.

The baseline is what a user would write by hand: a pool of 2 threads calling
``subprocess.run(["true"])`` (output not captured). The executor run does what the
engine does per attempt: a fresh working folder, a log file, the tagged
environment, the pidfd reaper and the exit callback; the next attempt is launched
from the main thread when an exit arrives (the scheduler's role). A third run
adds a memory limit to every attempt, so the memory monitor thread is active.
The ``spawner`` variants run the same loop through SpawnerExecutor (the C helper).

Usage: python bench/bench_spawn.py [--jobs 2001] [--runs 3] [--scratch DIR ...]
Attempt files go under /var/tmp (ext4 here) and /dev/shm (tmpfs) by default: on
this host creating files costs far more on disk, and /tmp is slower still.
Writes bench/results/spawn.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chalicelib.localbatch.execution.executor import ExitInfo, LaunchRequest, ProcessExecutor
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor

SLOTS = 2
LEFTOVERS: list[str] = []
RESULTS = Path(__file__).resolve().parent / "results" / "spawn.json"


def run_baseline(jobs: int) -> float:
    """Seconds for `jobs` x subprocess.run(["true"]) on a 2-thread pool."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        for result in pool.map(lambda _: subprocess.run(["true"], check=False), range(jobs)):
            if result.returncode != 0:
                raise RuntimeError("true failed")
    return time.perf_counter() - started


def run_executor(jobs: int, scratch: str, memory_mib: int, launchers: int = 1,
                 executor_class: type = ProcessExecutor) -> float:
    """Seconds for `jobs` attempts of `true` through ProcessExecutor on 2 slots.

    ``launchers`` threads take exits off the callback queue and launch the next
    attempt, as the engine's scheduler/launcher threads do.
    """
    root = tempfile.mkdtemp(prefix="bench-spawn-", dir=scratch)
    executor = executor_class(f"bench-{os.getpid()}-{time.monotonic_ns()}")
    exits: queue.SimpleQueue[ExitInfo | None] = queue.SimpleQueue()
    executor.set_exit_callback(exits.put)
    counter = itertools.count()
    failures: list[ExitInfo] = []

    def launch_next() -> None:
        index = next(counter)
        if index < jobs:
            key = f"bench:{index}#1"
            executor.launch(LaunchRequest(
                attempt_key=key,
                argv=("true",),
                env={"AWS_BATCH_JOB_ID": f"bench:{index}", "AWS_BATCH_JOB_ATTEMPT": "1"},
                workdir=f"{root}/scratch/{index}",
                log_path=f"{root}/logs/{index}.log",
                memory_mib=memory_mib,
            ))

    finished = itertools.count(1)

    def launcher() -> None:
        while True:
            info = exits.get()
            if info is None:
                return
            if info.exit_code != 0:
                failures.append(info)
            if next(finished) == jobs:
                for _ in range(launchers):
                    exits.put(None)
            launch_next()

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=launcher) for _ in range(launchers)]
        for thread in threads:
            thread.start()
        for _ in range(min(SLOTS, jobs)):
            launch_next()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if failures:
            raise RuntimeError(f"attempt failed: {failures[0]}")
        return elapsed
    finally:
        executor.close()
        # Deleted after all runs: on this host's ext4 (mounted with `discard`) a big
        # delete slows the file creations of the next run.
        LEFTOVERS.append(root)


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(jobs: int, runs: int, scratch: str) -> dict[str, object]:
    """Runs every variant `runs` times, interleaved, with attempt files under `scratch`."""
    load_before = os.getloadavg()
    variants = {
        "baseline": lambda: run_baseline(jobs),
        "executor": lambda: run_executor(jobs, scratch, memory_mib=0),
        "executor_memlimit": lambda: run_executor(jobs, scratch, memory_mib=2048),
        "executor_2_launchers": lambda: run_executor(jobs, scratch, memory_mib=0, launchers=2),
        "spawner": lambda: run_executor(jobs, scratch, memory_mib=0, executor_class=SpawnerExecutor),
        "spawner_2_launchers": lambda: run_executor(jobs, scratch, memory_mib=0, launchers=2,
                                                    executor_class=SpawnerExecutor),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):  # interleaved so drift hits all variants alike
        for name, run in variants.items():
            before = cpu_seconds()
            samples[name].append(run())
            cpu[name].append(cpu_seconds() - before)
    for root in LEFTOVERS:
        shutil.rmtree(root, ignore_errors=True)
    LEFTOVERS.clear()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "scratch_root": scratch,
        "samples_s": samples,
        "median_s": medians,
        # CPU seconds (this process + its children): overhead that wall time on a
        # shared, loaded host hides or exaggerates.
        "median_cpu_s": {name: statistics.median(values) for name, values in cpu.items()},
        "ratio_vs_baseline": {name: value / medians["baseline"] for name, value in medians.items()
                              if name != "baseline"},
        "rate_per_s": {name: jobs / value for name, value in medians.items()},
        "load_average_before_after": [load_before, os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2001)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", action="append",
                        help="folder for attempt workdirs and logs (repeatable; default /var/tmp and /dev/shm)")
    args = parser.parse_args()
    scratches = args.scratch or [path for path in ("/var/tmp", "/dev/shm") if os.path.isdir(path)]

    result: dict[str, object] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "jobs": args.jobs,
        "slots": SLOTS,
        "runs": args.runs,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "by_scratch": {},
    }
    for scratch in scratches:
        measured = measure(args.jobs, args.runs, scratch)
        result["by_scratch"][scratch] = measured  # type: ignore[index]
        print(f"-- attempt files under {scratch}")
        for name, value in measured["median_s"].items():  # type: ignore[attr-defined]
            print(f"{name:22s} median {value:6.3f} s  ({args.jobs / value:7.0f}/s)  "
                  f"cpu {measured['median_cpu_s'][name]:6.3f} s")  # type: ignore[index]
        for name, ratio in measured["ratio_vs_baseline"].items():  # type: ignore[attr-defined]
            print(f"ratio {name}/baseline {ratio:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
