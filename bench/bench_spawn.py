"""Bench: 2,001 `true` processes through ProcessExecutor on 2 slots vs a plain thread pool.

The baseline is what a user would write by hand: a pool of 2 threads calling
``subprocess.run(["true"])`` (output not captured). The executor run does what the
engine does per attempt: a fresh working folder, a log file, the tagged
environment, the pidfd reaper and the exit callback; the next attempt is launched
from the main thread when an exit arrives (the scheduler's role). A third run
adds a memory limit to every attempt, so the memory monitor thread is active.

Usage: python bench/bench_spawn.py [--jobs 2001] [--runs 3]
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

from chalicelib.localbatch.executor import ExitInfo, LaunchRequest, ProcessExecutor

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


def run_executor(jobs: int, memory_mib: int, launchers: int = 1) -> float:
    """Seconds for `jobs` attempts of `true` through ProcessExecutor on 2 slots.

    ``launchers`` threads take exits off the callback queue and launch the next
    attempt, as the engine's scheduler/launcher threads do.
    """
    root = tempfile.mkdtemp(prefix="bench-spawn-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    executor = ProcessExecutor(f"bench-{os.getpid()}-{time.monotonic_ns()}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2001)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()
    variants = {
        "baseline": lambda: run_baseline(args.jobs),
        "executor": lambda: run_executor(args.jobs, memory_mib=0),
        "executor_memlimit": lambda: run_executor(args.jobs, memory_mib=2048),
        "executor_2_launchers": lambda: run_executor(args.jobs, memory_mib=0, launchers=2),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.runs):  # interleaved so drift hits all variants alike
        for name, run in variants.items():
            before = cpu_seconds()
            samples[name].append(run())
            cpu[name].append(cpu_seconds() - before)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    result = {
        "jobs": args.jobs,
        "slots": SLOTS,
        "runs": args.runs,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "samples_s": samples,
        "median_s": medians,
        # CPU seconds (this process + its children): overhead that wall time on a
        # shared, loaded host hides or exaggerates.
        "median_cpu_s": {name: statistics.median(values) for name, values in cpu.items()},
        "ratio_executor_vs_baseline": medians["executor"] / medians["baseline"],
        "ratio_executor_memlimit_vs_baseline": medians["executor_memlimit"] / medians["baseline"],
        "ratio_executor_2_launchers_vs_baseline": medians["executor_2_launchers"] / medians["baseline"],
        "scratch_root": os.environ.get("BENCH_TMPDIR", "/var/tmp"),
        "load_average_before_after": [load_before, os.getloadavg()],
        "rate_per_s": {name: args.jobs / value for name, value in medians.items()},
    }
    for root in LEFTOVERS:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, value in medians.items():
        print(f"{name:22s} median {value:6.3f} s  ({args.jobs / value:7.0f}/s)  "
              f"cpu {result['median_cpu_s'][name]:6.3f} s")
    for name, value in medians.items():
        if name != "baseline":
            print(f"ratio {name}/baseline {value / medians['baseline']:.2f}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
