"""Submission cost: SubmitJob calls and time to submit a 3-stage run of 100, 1,000 and 10,000 items.

Runs the real submission path (`service.start_run`: validate, plan, write the manifest,
register job definitions, submit with idempotency look-ups) against the in-process engine.
The stages ask for more vCPUs than the engine offers, so nothing runs and only submission is
measured. The number of SubmitJob calls must not grow with the number of items: items live in
the manifest, stages are array jobs.

    python bench/bench_submit.py [--sizes 100,1000,10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import median, write_result
from chalicelib.local.runtime import open_with_engine
from chalicelib.localbatch.engine import Engine, HostCapacity
from chalicelib.pipeline.ports import RunRequest
from chalicelib.pipeline.runs import start_run

SPEC: dict[str, Any] = {
    "name": "bench",
    "defaults": {"image": "public.ecr.aws/docker/library/busybox:stable", "compute": "on-demand",
                 # More vCPUs than the engine offers: jobs stay RUNNABLE, nothing runs.
                 "resources": {"vcpus": 8, "memory": 64}},
    "stages": [
        {"name": "qc", "command": ["qc", "{item}", "{out}"], "foreach": "item"},
        {"name": "align", "command": ["align", "{qc}", "{out}"], "foreach": "item", "after": ["qc"]},
        {"name": "joint", "command": ["joint", "{align}", "{out}"], "after": ["align"]},
    ],
}


class CountingBatch:
    """Wraps a Batch client; counts calls and time per operation."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def call(**kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(**kwargs)
            finally:
                self.calls[name] += 1
                self.seconds[name] += time.perf_counter() - started

        return call


def measure(size: int, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / f"items-{size}.json"
    manifest.write_text(json.dumps({"items": [
        {"key": f"s{i:05d}", "files": [f"file:///data/s{i:05d}_R1.fq", f"file:///data/s{i:05d}_R2.fq"]}
        for i in range(size)
    ]}))
    engine = Engine(root / f"engine-{size}", host=HostCapacity(vcpus=2, memory_mib=4096, gpus=0)).start()
    try:
        runtime = open_with_engine(engine, root / f"data-{size}")
        batch = CountingBatch(runtime.batch)
        ports = runtime.ports.__class__(**{**runtime.ports.__dict__, "batch": batch})
        run_id = f"bench-{size}"
        started = time.perf_counter()
        run = start_run(ports, RunRequest(run_id=run_id, spec=SPEC, items_source=str(manifest),
                                          prefix=runtime.run_prefix(run_id)))
        elapsed = time.perf_counter() - started
        manifest_bytes = (root / f"data-{size}" / "runs" / run_id / "manifest.json").stat().st_size
        jobs = runtime.store.list_jobs(run_id)
        runtime.close()
    finally:
        engine.stop()
    return {
        "items": size,
        "status": run.status.value,
        "submit_job_calls": batch.calls["submit_job"],
        "api_calls": dict(batch.calls),
        "jobs_recorded": len(jobs),
        "seconds_to_submit": round(elapsed, 4),
        "seconds_in_submit_job": round(batch.seconds["submit_job"], 4),
        "manifest_bytes": manifest_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-submit-") as tmp:
        for size in sizes:
            samples = [measure(size, Path(tmp) / f"{size}-{n}") for n in range(args.runs)]
            row = dict(samples[0])
            row["seconds_to_submit"] = round(median([s["seconds_to_submit"] for s in samples]), 4)
            row["seconds_in_submit_job"] = round(median([s["seconds_in_submit_job"] for s in samples]), 4)
            row["runs"] = args.runs
            rows.append(row)
            print(f"{size:>6} items, 3 stages: {row['submit_job_calls']} SubmitJob calls, "
                  f"{row['seconds_to_submit'] * 1000:.0f} ms to submit (median of {args.runs}; "
                  f"{row['seconds_in_submit_job'] * 1000:.0f} ms in SubmitJob), "
                  f"all calls {row['api_calls']}, manifest {row['manifest_bytes']} bytes")
    counts = {row["submit_job_calls"] for row in rows}
    verdict = "constant" if len(counts) == 1 else "GROWS WITH ITEMS"
    print(f"SubmitJob calls per run: {sorted(counts)} -> {verdict}")
    write_result("submit", {"bench": "bench_submit", "stages": 3, "engine": "in-process", "results": rows,
                            "submit_job_calls_constant": len(counts) == 1})
    return 0 if len(counts) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
