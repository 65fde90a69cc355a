"""Scale: a 3-stage pipeline over many items of a trivial tool through `conveyor run` with its
live progress, versus the same commands under `xargs -P <cores>`.

The pipeline is bench_pipeline's (per item, N_TO_N, join) with `true` as the tool: 2N+1 jobs
(60,001 for the default 30,000 items). `conveyor run` follows a `conveyor serve` (so the
engine and the run's tracker/progress are separate processes whose memory can be read apart)
and draws its live progress on a pseudo-terminal, as a user would see it. While it runs this
script samples, every --sample seconds:

- the peak RSS of the engine (`conveyor serve`) and of `conveyor run`;
- the tracker's backlog: item jobs the engine has ended (its state.sqlite3) minus item results
  the run's tracker has recorded as ended (runs.sqlite3). A tracker that keeps up holds it
  near the number of jobs ending per sample; one that falls behind lets it grow all run long;
- how long `conveyor run` took to return after the engine ended the last job (the tail).

Then the same 2N+1 commands run under xargs (bench_pipeline.run_by_hand). One round each
(a 30,000-item run takes long); the ratio is of the two wall times.

    python bench/bench_scale.py [--items 30000] [--cores N] [--sample 2]

Results go to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_pipeline import make_inputs, run_by_hand, write_spec
from bench.common import rss_mib, served_engine, write_result

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "bench-scale"
_ENDED = "('SUCCEEDED', 'FAILED')"


def _count(db: Path, query: str, *params: object) -> int | None:
    """One read-only count from a live SQLite file (None while it is missing or locked)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(query, params).fetchone()[0])
    except sqlite3.Error:
        return None


def engine_ended(engine_dir: Path) -> int | None:
    """Jobs of the run (array children and single jobs) the engine has ended."""
    return _count(engine_dir / "state.sqlite3",
                  f"SELECT count(*) FROM jobs WHERE status IN {_ENDED} AND (parent_id IS NOT NULL OR job_id NOT IN "
                  "(SELECT parent_id FROM jobs WHERE parent_id IS NOT NULL))")


def tracked_ended(run_dir: Path) -> int | None:
    """Item results the run's tracker has recorded as ended."""
    return _count(run_dir / "runs.sqlite3", f"SELECT count(*) FROM items WHERE run_id = ? AND status IN {_ENDED}",
                  RUN_ID)


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drain(fd: int, seen: list[int]) -> None:
    """Reads the progress display off the pseudo-terminal (a terminal nobody reads would block it)."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        seen[0] += len(data)


def run_pipeline(folder: Path, spec: Path, cores: int, sample_s: float, jobs: int) -> dict[str, object]:
    run_dir = folder / "run-state"
    pids: list[int] = []
    with served_engine(pids, vcpus=cores) as (url, engine_dir):
        engine_pid = pids[0]
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--run-id", RUN_ID,
                                 "--endpoint-url", url, "--data-dir", str(run_dir)],
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=folder, env=env)
        os.close(slave)
        drawn = [0]
        drainer = threading.Thread(target=_drain, args=(master, drawn), daemon=True)
        drainer.start()
        samples: list[dict[str, float | int | None]] = []
        peak_engine = peak_run = 0.0
        last_engine_end: float | None = None
        engine_cpu = run_cpu = 0.0
        while proc.poll() is None:
            peak_engine = max(peak_engine, rss_mib(engine_pid))
            engine_cpu, run_cpu = cpu_seconds(engine_pid), cpu_seconds(proc.pid) or run_cpu
            try:
                peak_run = max(peak_run, rss_mib(proc.pid))
            except OSError:
                pass
            ended, tracked = engine_ended(Path(engine_dir)), tracked_ended(run_dir)
            now = time.perf_counter() - started
            samples.append({"t": round(now, 2), "engine_ended": ended, "tracked_ended": tracked,
                            "engine_rss_mib": round(rss_mib(engine_pid), 1)})
            if last_engine_end is None and ended is not None and ended >= jobs:
                last_engine_end = now
            time.sleep(sample_s)
        elapsed = time.perf_counter() - started
        drainer.join(2)
        os.close(master)
        if proc.returncode != 0:
            raise RuntimeError(f"conveyor run exited {proc.returncode}")
    shutil.rmtree(run_dir, ignore_errors=True)
    backlogs = [s["engine_ended"] - s["tracked_ended"] for s in samples  # type: ignore[operator]
                if s["engine_ended"] is not None and s["tracked_ended"] is not None]
    return {"seconds": elapsed, "peak_engine_rss_mib": peak_engine, "peak_run_rss_mib": peak_run,
            "tail_after_last_job_s": None if last_engine_end is None else elapsed - last_engine_end,
            "backlog_max": max(backlogs, default=None), "backlog_samples": backlogs,
            "progress_bytes_drawn": drawn[0], "engine_cpu_s": engine_cpu, "run_cpu_s": run_cpu,
            "samples": samples}


def _halves_trend(values: list[int]) -> str:
    """'steady' when the second half's mean backlog is not above the first half's by half again."""
    if len(values) < 4:
        return "too few samples"
    half = len(values) // 2
    first, second = sum(values[:half]) / half, sum(values[half:]) / (len(values) - half)
    return "growing" if second > 1.5 * first + 50 else "steady"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=30000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between memory/backlog samples")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-scale-"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "chalicelib")], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        items = make_inputs(folder, args.items)
        spec = write_spec(folder, items, ["true"])
        load_before = os.getloadavg()
        jobs = 2 * args.items + 1
        pipeline = run_pipeline(folder, spec, args.cores, args.sample, jobs)
        print(f"conveyor run: {pipeline['seconds']:.1f} s", flush=True)
        by_hand = run_by_hand(folder, items, ["true"], args.cores, 0)
        load_after = os.getloadavg()
        ratio = float(pipeline["seconds"]) / by_hand  # type: ignore[arg-type]
        trend = _halves_trend(pipeline["backlog_samples"])  # type: ignore[arg-type]
        print(f"{jobs} jobs (true tool): conveyor run {pipeline['seconds']:.1f} s "
              f"({jobs / float(pipeline['seconds']):.0f} jobs/s), xargs -P {args.cores} {by_hand:.2f} s, "  # type: ignore[arg-type]
              f"ratio {ratio:.1f}x")
        print(f"peak RSS: engine {pipeline['peak_engine_rss_mib']:.0f} MiB, conveyor run "
              f"{pipeline['peak_run_rss_mib']:.0f} MiB; tracker backlog max {pipeline['backlog_max']} ({trend}); "
              f"run returned {pipeline['tail_after_last_job_s']} s after the engine ended the last job")
        print(f"CPU: engine {pipeline['engine_cpu_s']:.1f} s, conveyor run (tracker + progress) "
              f"{pipeline['run_cpu_s']:.1f} s")
        print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
        write_result("scale", {"items": args.items, "jobs": jobs, "tool": "true", "cores": args.cores,
                               "load_before": load_before, "load_after": load_after,
                               "conveyor_run_s": pipeline["seconds"], "xargs_s": by_hand, "ratio": ratio,
                               "backlog_trend": trend, **{k: v for k, v in pipeline.items() if k != "seconds"}})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
