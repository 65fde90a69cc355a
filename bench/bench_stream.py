"""Stream vs Batch path: a no-op tool through 2 stages, items/s for a burst and arrival-to-result latency.

Both paths run against one `conveyor serve` (2 vCPUs) and the same runner, which stages the
item, runs `true` and publishes an empty output atomically, per stage:

* stream: `mode: stream`, a fleet of 2 workers per stage (min = max = 2, started and idle
  before the clock starts), one SQS message per item and stage on the engine's SQS;
* batch: the same stages as a batch pipeline: a burst is one run over all items (two array
  jobs, N_TO_N), a paced arrival is one run of one item (what a per-object trigger starts).

Throughput: ``--burst`` items arrive at once; items/s = items / (last result - first arrival).
Latency: ``--paced`` items arrive one every ``--interval`` seconds; arrival to the second
stage's result (p50, p99). Prints both side by side and writes bench/results/stream.json.

    python bench/bench_stream.py [--burst 60] [--paced 20] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import served_engine, write_result
from chalicelib.local.fleet import Fleet
from chalicelib.local.runtime import open_remote
from chalicelib.local.stream import LocalStream
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.spec import parse_document
from chalicelib.pipeline.stream.worker import epoch_ms

SPEC = """name: noop
mode: stream
defaults:
  resources: {vcpus: 1, memory: 64}
  compute: on-demand
  stream: {min_workers: 2, max_workers: 2, visibility_timeout: 60, max_receives: 1}
stages:
  - {name: first, foreach: item, command: ["true"]}
  - {name: second, foreach: item, after: [first], command: ["true"]}
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def make_items(folder: Path, prefix: str, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{n:05d}.txt" for n in range(count)]
    for path in paths:
        path.write_text("x")
    return paths


# -- stream -----------------------------------------------------------------------------------
def stream_results(stream: LocalStream, keys: set[str], timeout: float = 600) -> dict[str, tuple[int, int]]:
    """key -> (arrived, done) for every key once all reached SUCCEEDED in the last stage."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = {r.key: (r.arrived_at or 0, r.updated_at or 0) for r in stream.items.list_items(
            stream.run_id, "second", limit=1_000_000) if r.key in keys and r.status.value == "SUCCEEDED"}
        if len(done) == len(keys):
            return done
        time.sleep(0.05)
    raise TimeoutError("stream items did not finish")


def stream_path(url: str, root: Path, burst: int, paced: int, interval: float) -> dict[str, Any]:
    spec = root / "stream.yaml"
    spec.write_text(SPEC)
    stream = LocalStream.open(str(spec), url, root / "stream-data")
    fleet = Fleet(stream, grace=2, interval=0.2).start()
    try:
        deadline = time.time() + 60
        while not all(len(f.running) == 2 and all(w.state == "idle" for w in f.running)
                      for f in fleet.stages.values()):
            if time.time() > deadline:
                raise TimeoutError("the fleet did not start")
            time.sleep(0.1)
        files = make_items(root / "stream-items", "b", burst)
        for path in files:
            stream.submit_file(path)
        done = stream_results(stream, {p.stem for p in files})
        first, last = min(a for a, _ in done.values()), max(d for _, d in done.values())
        paced_files = make_items(root / "stream-items", "p", paced)
        for path in paced_files:
            stream.submit_file(path)
            time.sleep(interval)
        latencies = [d - a for a, d in stream_results(stream, {p.stem for p in paced_files}).values()]
        return {"items_per_s": burst / ((last - first) / 1000), "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99)}
    finally:
        fleet.stop()
        stream.close()


# -- batch ------------------------------------------------------------------------------------
def batch_path(url: str, root: Path, burst: int, paced: int, interval: float) -> dict[str, Any]:
    document = parse_document(SPEC.replace("mode: stream\n", ""))
    for stage in document["stages"]:
        stage.pop("stream", None)
    document["defaults"].pop("stream")
    runtime = open_remote(url, root / "batch-data")
    counter = iter(range(1_000_000))

    def start(folder: Path) -> tuple[str, int]:
        run_id = f"noop-bench-{next(counter)}"
        arrived = epoch_ms()
        runtime.starter.start_run(RunRequest(run_id=run_id, spec=document, items_source=str(folder),
                                             prefix=runtime.run_prefix(run_id), source="bench"))
        return run_id, arrived

    def ended(run_id: str, timeout: float = 600) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = runtime.store.get_run(run_id)
            if run is not None and run.status.is_terminal:
                if run.status.value != "SUCCEEDED":
                    raise RuntimeError(f"batch run {run_id} {run.status.value}: {run.failures}")
                return int(run.ended_at or epoch_ms())
            time.sleep(0.05)
        raise TimeoutError(run_id)

    try:
        folder = root / "batch-burst"
        make_items(folder, "b", burst)
        run_id, arrived = start(folder)
        throughput = burst / ((ended(run_id) - arrived) / 1000)
        runs = []
        for n in range(paced):
            single = root / f"batch-paced-{n}"
            make_items(single, "p", 1)
            runs.append(start(single))
            time.sleep(interval)
        latencies = [ended(run_id) - arrived for run_id, arrived in runs]
        return {"items_per_s": throughput, "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument("--paced", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    with served_engine(None, vcpus=2) as (url, _):
        root = Path(tempfile.mkdtemp(prefix="conveyor-bench-stream-"))
        stream = stream_path(url, root, args.burst, args.paced, args.interval)
        batch = batch_path(url, root, args.burst, args.paced, args.interval)
    print(f"\nno-op tool, 2 stages, {args.burst} items at once / {args.paced} items every {args.interval:g}s")
    print(f"{'':<34}{'stream (2 workers/stage)':>26}{'batch (2 vCPUs)':>18}")
    print(f"{'burst throughput (items/s)':<34}{stream['items_per_s']:>26.1f}{batch['items_per_s']:>18.1f}")
    print(f"{'arrival -> result p50 (ms)':<34}{stream['p50_ms']:>26.0f}{batch['p50_ms']:>18.0f}")
    print(f"{'arrival -> result p99 (ms)':<34}{stream['p99_ms']:>26.0f}{batch['p99_ms']:>18.0f}")
    write_result("stream", {"burst": args.burst, "paced": args.paced, "interval_s": args.interval,
                            "stream": stream, "batch": batch,
                            "note": "shared 2-core machine; several engineers' tests running at the same time"})


if __name__ == "__main__":
    main()
