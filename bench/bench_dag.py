"""DAG throughput: array A (1,000) -> array B (1,000, N_TO_N) -> job C, all `true`, 1 vCPU each on 2 vCPUs.

Compares the engine (boto3 over HTTP to `conveyor serve`, every state change durable, logs
kept) with a plain Python script running the same 2,001 processes with the same dependencies
on a pool of 2 threads. Prints medians of several runs, side by side, and their ratio, with
the machine's load average (the machine is shared: a figure means little without it).

    python bench/bench_dag.py [--size 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import batch_client, median, served_engine, wait_for_end, write_result


def plain_python(size: int) -> float:
    """2 threads, FIFO work list: A[i] unlocks B[i]; C runs after every B."""
    work: deque[tuple[str, int]] = deque(("A", i) for i in range(size))
    lock = threading.Condition()
    remaining_b = size
    done = False

    def worker() -> None:
        nonlocal remaining_b, done
        while True:
            with lock:
                while not work and not done:
                    lock.wait()
                if done and not work:
                    return
                stage, index = work.popleft()
            subprocess.run(["true"], check=True)
            with lock:
                if stage == "A":
                    work.append(("B", index))
                elif stage == "B":
                    remaining_b -= 1
                    if remaining_b == 0:
                        work.append(("C", 0))
                else:
                    done = True
                lock.notify_all()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def engine_run(url: str, size: int, round_no: int) -> float:
    batch = batch_client(url)
    name = f"true-{round_no}"
    batch.register_job_definition(
        jobDefinitionName=name, type="container",
        containerProperties={"image": "local", "command": ["true"],
                             "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                      {"type": "MEMORY", "value": "64"}]})
    start = time.perf_counter()
    a = batch.submit_job(jobName="A", jobQueue="default", jobDefinition=name, arrayProperties={"size": size})
    b = batch.submit_job(jobName="B", jobQueue="default", jobDefinition=name, arrayProperties={"size": size},
                         dependsOn=[{"jobId": a["jobId"], "type": "N_TO_N"}])
    c = batch.submit_job(jobName="C", jobQueue="default", jobDefinition=name, dependsOn=[{"jobId": b["jobId"]}])
    status = wait_for_end(url, c["jobId"])
    elapsed = time.perf_counter() - start
    if status != "SUCCEEDED":
        raise RuntimeError(f"C ended {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    jobs = 2 * args.size + 1
    plain, engine, load = [], [], [round(os.getloadavg()[0], 2)]
    with served_engine() as (url, _):
        for round_no in range(args.runs):
            # Alternating which goes first, so a change of load between the two does not favour one.
            first_plain = round_no % 2 == 0
            if first_plain:
                plain.append(plain_python(args.size))
            engine.append(engine_run(url, args.size, round_no))
            if not first_plain:
                plain.append(plain_python(args.size))
            load.append(round(os.getloadavg()[0], 2))
            print(f"round {round_no + 1}: plain {plain[-1]:.2f} s, engine {engine[-1]:.2f} s, "
                  f"ratio {engine[-1] / plain[-1]:.2f}x, load {load[-1]}", flush=True)
    p, e = median(plain), median(engine)
    print(f"\n{jobs} jobs, 2 slots: plain Python {p:.2f} s ({jobs / p:.0f} jobs/s), "
          f"engine {e:.2f} s ({jobs / e:.0f} jobs/s), ratio {e / p:.2f}x (target <= 1.3x, aim 1.2x); "
          f"load average {min(load)}-{max(load)}")
    write_result("dag", {"jobs": jobs, "runs": args.runs, "plain_python_s": plain, "engine_s": engine,
                         "plain_median_s": p, "engine_median_s": e, "ratio": e / p,
                         "round_ratios": [b / a for a, b in zip(plain, engine)], "load_average": load})


if __name__ == "__main__":
    main()
