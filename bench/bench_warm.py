"""A pipeline runner job started cold (a fresh `python -m chalicelib.runner`) versus warm (forked
from the engine's warm launcher), through the real conveyor-spawner, one job at a time.

Each job is what the engine runs for one item of a stage: the runner reads its item from a
manifest, stages the item's file into a scratch folder, runs the tool (`true`), publishes
`{out}` with its _SUCCESS marker and removes the scratch folder. Per job this prints the CPU
of everything the spawner ran (runner, tool, launcher share) and the wall time from launch to
exit, medians of alternating rounds, and their ratios.

    python bench/bench_warm.py [--jobs 100] [--rounds 5]

Results go to bench/results/warm.json.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import median, write_result
from chalicelib.localbatch.execution.container_env import ContainerEnvironment, ContainerOptions
from chalicelib.localbatch.execution.executor import ExitInfo, LaunchRequest
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor
from chalicelib.objectstores import open_store
from chalicelib.pipeline.invocation import RUNNER_MODULE, RUNNER_WARM_ENTRY
from chalicelib.pipeline.item import Item
from chalicelib.pipeline.manifest import write_manifest

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 50


def make_run(folder: Path) -> str:
    """A run prefix with a manifest of ITEMS one-file items."""
    (folder / "items").mkdir(parents=True)
    items = []
    for index in range(ITEMS):
        path = folder / "items" / f"s{index:03d}.txt"
        path.write_text(f"item {index}\n")
        items.append(Item(f"s{index:03d}", (path.as_uri(),)))
    prefix = (folder / "run").as_uri()
    write_manifest(open_store(prefix), prefix, items)
    return prefix


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure(folder: Path, prefix: str, warm: bool, jobs: int, tag: str) -> tuple[float, float]:
    """(median wall ms per job, CPU ms per job of the spawner's children) for one executor."""
    options = ContainerOptions(warm_modules=(RUNNER_WARM_ENTRY,) if warm else ())
    executor = SpawnerExecutor(f"bench-warm-{os.getpid()}", spawners=1,
                               container=ContainerEnvironment(options, str(folder / "runtime")))
    exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
    executor.set_exit_callback(exits.put)
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}

    def run_one(number: int) -> float:
        argv = ("python", "-m", RUNNER_MODULE, "--run-prefix", prefix, "--stage", f"{tag}{number}",
                "--", "true", "{out}", "{item}")
        request = LaunchRequest(attempt_key=f"{tag}{number}", argv=argv,
                                env={**env, "AWS_BATCH_JOB_ARRAY_INDEX": str(number % ITEMS)},
                                workdir=str(folder / "work" / f"{tag}{number}"),
                                log_path=str(folder / "logs" / f"{tag}{number}.log"))
        started = time.perf_counter()
        executor.launch(request)
        info = exits.get(timeout=60)
        if info.exit_code != 0:
            raise SystemExit(f"job {tag}{number} failed: {info}: {Path(request.log_path).read_text()}")
        return (time.perf_counter() - started) * 1000

    try:
        run_one(0)  # warm: starts the launcher (this job is cold)
        time.sleep(1.0)
        before = cpu_ms()
        walls = [run_one(number) for number in range(1, jobs + 1)]
    finally:
        executor.close()  # reaps the spawner: its children's CPU is counted from here
    return median(walls), (cpu_ms() - before) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-warm-"))
    try:
        prefix = make_run(folder)
        results: dict[str, dict[str, list[float]]] = {"cold": {"wall_ms": [], "cpu_ms": []},
                                                       "warm": {"wall_ms": [], "cpu_ms": []}}
        load_before = os.getloadavg()
        for round_no in range(args.rounds):
            order = ["cold", "warm"] if round_no % 2 == 0 else ["warm", "cold"]
            for mode in order:
                wall, cpu = measure(folder, prefix, mode == "warm", args.jobs, f"{mode}{round_no}-")
                results[mode]["wall_ms"].append(wall)
                results[mode]["cpu_ms"].append(cpu)
                print(f"round {round_no + 1}: {mode}: {wall:.1f} ms per job, {cpu:.1f} ms CPU per job", flush=True)
        medians = {mode: {key: median(values) for key, values in parts.items()} for mode, parts in results.items()}
        print(f"cold: {medians['cold']['wall_ms']:.1f} ms wall, {medians['cold']['cpu_ms']:.1f} ms CPU per job; "
              f"warm: {medians['warm']['wall_ms']:.1f} ms wall, {medians['warm']['cpu_ms']:.1f} ms CPU per job "
              f"({medians['cold']['cpu_ms'] / medians['warm']['cpu_ms']:.1f}x less CPU)")
        print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
        write_result("warm", {"jobs": args.jobs, "rounds": args.rounds, "tool": "true", "load_before": load_before,
                              "load_after": os.getloadavg(), "medians": medians, "rounds_data": results})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
