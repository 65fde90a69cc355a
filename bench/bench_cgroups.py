"""Per-attempt cgroup cost: what the engine does around every attempt, timed on the real cgroupfs.

One cycle is what AttemptSetup does for an attempt: ``create`` (a tracking cgroup from the
pool, given the attempt's key, or one named after the attempt where cgroupfs takes no
extended attributes; a memory cgroup from the pool with the job's limit), the ``oom_killed``
read when it ends and ``remove`` (an empty pooled cgroup goes back to its pool). Two shapes, alternating: every attempt with the same memory
limit (a run's jobs mostly share one) and limits that change from one attempt to the next.
CPU of this process per cycle, medians of the rounds.

    python bench/bench_cgroups.py [--cycles 400] [--rounds 6]

Results go to bench/results/cgroups.json (nothing is written where cgroups cannot be used).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import median, write_result
from chalicelib.localbatch.execution import cgroups as cgroups_mod

MIB = 1024 * 1024


def cycle_us(cgroups: cgroups_mod.AttemptCgroups, cycles: int, limits: list[int]) -> float:
    started = time.process_time()
    for index in range(cycles):
        paths = cgroups.create(f"bench-{index}", limits[index % len(limits)])
        cgroups.remove(paths, oom=cgroups.oom_killed(paths))
    return (time.process_time() - started) / cycles * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    cgroups, why = cgroups_mod.detect(secrets.token_hex(8))
    if cgroups is None:
        print(f"cgroups cannot be used here: {why}")
        return
    shapes = {"same_limit": [64 * MIB], "changing_limits": [64 * MIB, 128 * MIB]}
    cpu: dict[str, list[float]] = {name: [] for name in shapes}
    try:
        for round_no in range(args.rounds):
            for name in (list(shapes) if round_no % 2 == 0 else list(shapes)[::-1]):
                cpu[name].append(cycle_us(cgroups, args.cycles, shapes[name]))
    finally:
        cgroups.close()
    medians = {name: median(values) for name, values in cpu.items()}
    print(f"{why}: create + oom check + remove, {medians['same_limit']:.0f} µs CPU per attempt "
          f"(same limit), {medians['changing_limits']:.0f} µs (changing limits)")
    write_result("cgroups", {"tracking": why, "cycles": args.cycles, "rounds": args.rounds,
                             "cpu_us_per_attempt": cpu, "median_cpu_us_per_attempt": medians})


if __name__ == "__main__":
    main()
