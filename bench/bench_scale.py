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

It also reads where the CPU went, per job: the engine's, `conveyor run`'s (tracker and
progress), and the rest (the runner and the tool of every job: everything the engine's
processes reaped), from the CPU counters of the processes and of this script's children.

Then the same 2N+1 commands run under xargs (bench_pipeline.run_by_hand). One round each
(a 30,000-item run takes long); the ratio is of the two wall times. `--compare DIR` first runs
the pipeline with the code of another checkout DIR (e.g. `git archive main | tar -x -C DIR`),
so a change is measured before and after in one sitting on the same machine.

    python bench/bench_scale.py [--items 30000] [--cores N] [--sample 2] [--compare DIR]

Results go to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
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


def children_cpu() -> float:
    """User + system CPU of this script's reaped children and their reaped descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_code(code: Path) -> dict[str, str]:
    """The environment that makes `python -m chalicelib...` import the checkout ``code``."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), *rest])}


def run_pipeline(folder: Path, spec: Path, cores: int, sample_s: float, jobs: int,
                 code: Path = ROOT) -> dict[str, object]:
    run_dir = folder / "run-state"
    pids: list[int] = []
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(with_code(code))  # the served engine and `conveyor run` both import ``code``
    cpu_before = children_cpu()
    try:
        figures = _run_served(folder, run_dir, spec, cores, sample_s, jobs, pids)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    total_cpu = children_cpu() - cpu_before
    shutil.rmtree(run_dir, ignore_errors=True)
    engine_cpu, run_cpu = float(figures["engine_cpu_s"]), float(figures["run_cpu_s"])  # type: ignore[arg-type]
    figures["code"] = str(code)
    figures["total_cpu_s"] = total_cpu
    figures["per_job_cpu_ms"] = {"total": 1000 * total_cpu / jobs, "engine": 1000 * engine_cpu / jobs,
                                 "conveyor_run": 1000 * run_cpu / jobs,
                                 "runner_and_tool": 1000 * (total_cpu - engine_cpu - run_cpu) / jobs}
    return figures


def _run_served(folder: Path, run_dir: Path, spec: Path, cores: int, sample_s: float, jobs: int,
                pids: list[int]) -> dict[str, object]:
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
    backlogs = [s["engine_ended"] - s["tracked_ended"] for s in samples  # type: ignore[operator]
                if s["engine_ended"] is not None and s["tracked_ended"] is not None]
    return {"seconds": elapsed, "peak_engine_rss_mib": peak_engine, "peak_run_rss_mib": peak_run,
            # None: the run returned before a sample saw the engine end its last job, within
            # ``tail_at_most_s`` of it (the time since the last sample).
            "tail_after_last_job_s": None if last_engine_end is None else elapsed - last_engine_end,
            "tail_at_most_s": elapsed - (samples[-1]["t"] if samples else 0.0),  # type: ignore[operator]
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


def _report(name: str, jobs: int, pipeline: dict[str, object], by_hand: float) -> float:
    """Prints one pipeline run's figures; returns its ratio to xargs."""
    seconds = float(pipeline["seconds"])  # type: ignore[arg-type]
    ratio = seconds / by_hand
    trend = _halves_trend(pipeline["backlog_samples"])  # type: ignore[arg-type]
    cpu: dict[str, float] = pipeline["per_job_cpu_ms"]  # type: ignore[assignment]
    print(f"[{name}] {jobs} jobs (true tool): conveyor run {seconds:.1f} s ({jobs / seconds:.0f} jobs/s), "
          f"xargs {by_hand:.2f} s, ratio {ratio:.1f}x")
    print(f"[{name}] peak RSS: engine {pipeline['peak_engine_rss_mib']:.0f} MiB, conveyor run "
          f"{pipeline['peak_run_rss_mib']:.0f} MiB; tracker backlog max {pipeline['backlog_max']} ({trend}); "
          + (f"run returned {pipeline['tail_after_last_job_s']:.1f} s after the engine ended the last job"
             if pipeline["tail_after_last_job_s"] is not None else
             f"run returned within {pipeline['tail_at_most_s']:.1f} s of the engine's last job end"))
    print(f"[{name}] CPU: engine {pipeline['engine_cpu_s']:.1f} s, conveyor run (tracker + progress) "
          f"{pipeline['run_cpu_s']:.1f} s, all {pipeline['total_cpu_s']:.1f} s; per job: "
          + ", ".join(f"{part} {ms:.1f} ms" for part, ms in cpu.items()), flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=30000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between memory/backlog samples")
    parser.add_argument("--compare", type=Path, help="another checkout whose pipeline runs first, for before/after")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-scale-"))
    trees = ([("before", args.compare.resolve())] if args.compare else []) + [("this", ROOT)]
    for _, tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "chalicelib")], check=True,
                       stdout=subprocess.DEVNULL)
    try:
        items = make_inputs(folder, args.items)
        spec = write_spec(folder, items, ["true"])
        load_before = os.getloadavg()
        jobs = 2 * args.items + 1
        runs = {name: run_pipeline(folder, spec, args.cores, args.sample, jobs, tree) for name, tree in trees}
        by_hand = run_by_hand(folder, items, ["true"], args.cores, 0)
        load_after = os.getloadavg()
        ratios = {name: _report(name, jobs, pipeline, by_hand) for name, pipeline in runs.items()}
        print(f"xargs -P {args.cores}: {by_hand:.2f} s; load average before {load_before[0]:.2f}, "
              f"after {load_after[0]:.2f}")
        pipeline = runs["this"]
        write_result("scale", {"items": args.items, "jobs": jobs, "tool": "true", "cores": args.cores,
                               "load_before": load_before, "load_after": load_after,
                               "conveyor_run_s": pipeline["seconds"], "xargs_s": by_hand, "ratio": ratios["this"],
                               "backlog_trend": _halves_trend(pipeline["backlog_samples"]),  # type: ignore[arg-type]
                               **{k: v for k, v in pipeline.items() if k != "seconds"},
                               "before": {k: v for k, v in runs.get("before", {}).items() if k != "samples"} or None})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
