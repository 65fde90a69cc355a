"""Engine figures: SubmitJob latency of a 10,000-child array, memory holding 30,000 jobs, and
scheduling efficiency of 40 x `sleep 5` on 2 vCPUs.

    python bench/bench_engine.py [--skip-efficiency]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import batch_client, median, rss_mib, served_engine, wait_for_end, write_result


def register(batch: Any, name: str, command: list[str]) -> None:
    batch.register_job_definition(
        jobDefinitionName=name, type="container",
        containerProperties={"image": "local", "command": command,
                             "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                      {"type": "MEMORY", "value": "64"}]})


def hold_queue(batch: Any) -> None:
    """A queue whose only environment is DISABLED: jobs in it stay RUNNABLE, so they are only held."""
    batch.create_compute_environment(computeEnvironmentName="hold", type="MANAGED", state="DISABLED",
                                     computeResources={"type": "EC2", "maxvCpus": 2, "subnets": [],
                                                       "instanceRole": "local"})
    batch.create_job_queue(jobQueueName="hold", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "hold"}])


def wait_children(batch: Any, parent_id: str, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        summary = batch.describe_jobs(jobs=[parent_id])["jobs"][0]["arrayProperties"]["statusSummary"]
        if summary.get("RUNNABLE", 0) == count:
            return
        time.sleep(0.2)
    raise TimeoutError(parent_id)


def submit_and_memory(url: str, pid: int) -> dict[str, Any]:
    batch = batch_client(url)
    register(batch, "noop", ["true"])
    hold_queue(batch)
    rss_start = rss_mib(pid)
    latencies = []
    parents = []
    for _ in range(3):
        start = time.perf_counter()
        response = batch.submit_job(jobName="big", jobQueue="hold", jobDefinition="noop",
                                    arrayProperties={"size": 10_000})
        latencies.append(time.perf_counter() - start)
        parents.append(response["jobId"])
    for parent in parents:
        wait_children(batch, parent, 10_000)
    rss_held = rss_mib(pid)
    return {"submit_10000_child_array_s": latencies, "submit_median_s": median(latencies),
            "rss_start_mib": rss_start, "rss_with_30003_jobs_mib": rss_held}


def efficiency(url: str) -> dict[str, Any]:
    batch = batch_client(url)
    register(batch, "sleep5", ["sleep", "5"])
    start = time.perf_counter()
    ids = [batch.submit_job(jobName=f"s{i}", jobQueue="default", jobDefinition="sleep5")["jobId"]
           for i in range(40)]
    for job_id in ids:
        if wait_for_end(url, job_id) != "SUCCEEDED":
            raise RuntimeError(job_id)
    elapsed = time.perf_counter() - start
    return {"forty_sleep5_on_2_vcpus_s": elapsed, "ideal_s": 100.0, "efficiency": 100.0 / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-efficiency", action="store_true")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    pids: list[int] = []
    with served_engine(pids) as (url, _):
        figures.update(submit_and_memory(url, pids[0]))
    print(f"SubmitJob, 10,000-child array: median {figures['submit_median_s'] * 1000:.0f} ms "
          f"(runs: {', '.join(f'{x * 1000:.0f}' for x in figures['submit_10000_child_array_s'])} ms; target < 500 ms)")
    print(f"engine RSS: {figures['rss_start_mib']:.0f} MiB empty, {figures['rss_with_30003_jobs_mib']:.0f} MiB "
          "holding 30,003 jobs (target < 300 MB)")
    if not args.skip_efficiency:
        with served_engine() as (url, _):
            figures.update(efficiency(url))
        print(f"40 x sleep 5 at 1 vCPU on 2 vCPUs: {figures['forty_sleep5_on_2_vcpus_s']:.1f} s "
              f"(ideal 100 s, efficiency {figures['efficiency'] * 100:.1f}%; target <= 101 s)")
    write_result("engine", figures)


if __name__ == "__main__":
    main()
