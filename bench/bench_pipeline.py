"""Pipeline overhead: a 3-stage pipeline of short Python tools through `conveyor run`, versus the
same commands run by hand with `xargs -P <cores>`.

Stages (N items, default 300):

    a   per item:            python work.py ITERS {out} {item}
    b   per item, N_TO_N:    python work.py ITERS {out} {a}
    c   join over b:         python work.py ITERS {out} {b}

`work.py` reads its inputs (files or folders), spins ITERS rounds of arithmetic (calibrated
here to about --work-ms of CPU) and writes one small file to its output folder. Every tool
is a fresh `python` process on both sides.

By hand (the baseline): the same tool commands, one `xargs -P <cores>` per stage (a stage
starts when the previous one has ended), reading the item files and the previous stage's
folders where they lie and writing straight into output folders made beforehand: the least
a person would do. `conveyor run` adds, per job, the runner (`python -m chalicelib.runner`,
forked from the engine's warm launcher once that is ready: manifest read, staging into a scratch
folder, publishing with a _SUCCESS marker), the engine's scheduling and durable state, and the
run's tracking; per run, its own start (imports, the engine's start, planning) and end.

Rounds alternate (pipeline first in odd rounds, xargs first in even ones); the ratio is of
the medians. `--tool true` measures the same shapes with `true` as the tool (a figure for the
fixed cost per job, not a goal).

    python bench/bench_pipeline.py [--items 300] [--rounds 5] [--work-ms 60] [--tool python|true]

Results go to bench/results/pipeline.json (or pipeline_true.json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import median, write_result

ROOT = Path(__file__).resolve().parent.parent

WORK_TOOL = '''"""Bench tool: read the inputs, spin ITERS rounds of arithmetic, write OUT/result.txt."""
import os
import sys

iters, out, inputs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
size = 0
for path in inputs:
    if os.path.isdir(path):
        for folder, _, names in os.walk(path):
            for name in names:
                with open(os.path.join(folder, name), "rb") as handle:
                    size += len(handle.read())
    else:
        with open(path, "rb") as handle:
            size += len(handle.read())
total = 0
for i in range(iters):
    total = (total + i * i) % 1000003
with open(os.path.join(out, "result.txt"), "w") as handle:
    handle.write(f"{size} {total}\\n")
'''


def calibrate(work_ms: float) -> int:
    """Rounds of the tool's loop that take about `work_ms` of CPU in this interpreter."""
    probe = 200_000
    started = time.process_time()
    total = 0
    for i in range(probe):
        total = (total + i * i) % 1000003
    per_round = (time.process_time() - started) / probe
    return max(1, int(work_ms / 1000 / per_round))


def make_inputs(folder: Path, count: int) -> Path:
    items = folder / "items"
    items.mkdir(parents=True)
    for index in range(count):
        (items / f"s{index:05d}.txt").write_text(f"item {index}\n" * 20)
    return items


def write_spec(folder: Path, items: Path, tool_argv: list[str]) -> Path:
    """The 3-stage spec; tool_argv is the tool's command, followed by its arguments per stage."""
    def command(*args: str) -> str:
        return "[" + ", ".join(f'"{part}"' for part in [*tool_argv, *args]) + "]"

    spec = folder / "pipeline.yaml"
    spec.write_text(f"""name: bench
items:
  source: {items.as_uri()}
  pattern: "*.txt"
stages:
  - name: a
    foreach: item
    command: {command("{out}", "{item}")}
    resources: {{vcpus: 1, memory: 64}}
  - name: b
    after: [a]
    foreach: item
    command: {command("{out}", "{a}")}
    resources: {{vcpus: 1, memory: 64}}
  - name: c
    after: [b]
    command: {command("{out}", "{b}")}
    resources: {{vcpus: 1, memory: 64}}
""")
    return spec


def run_pipeline(folder: Path, spec: Path, round_no: int) -> float:
    data_dir = folder / f"conveyor-{round_no}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chalicelib.cli", "run", str(spec), "--data-dir", str(data_dir),
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL, cwd=folder)
    elapsed = time.perf_counter() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    return elapsed


def run_by_hand(folder: Path, items: Path, tool_argv: list[str], cores: int, round_no: int) -> float:
    """The same commands through xargs, stage by stage, outputs written in place."""
    out = folder / f"hand-{round_no}"
    inputs = sorted(items.iterdir())
    keys = [path.stem for path in inputs]
    for stage in ("a", "b"):
        for key in keys:
            (out / stage / key).mkdir(parents=True)
    (out / "c").mkdir(parents=True)
    stage_a = [(str(out / "a" / key), str(path)) for key, path in zip(keys, inputs)]
    stage_b = [(str(out / "b" / key), str(out / "a" / key)) for key in keys]
    started = time.perf_counter()
    for lines in (stage_a, stage_b):
        feed = "".join(f"{target} {source}\n" for target, source in lines)
        subprocess.run(["xargs", "-P", str(cores), "-n", "2", *tool_argv], input=feed.encode(), check=True)
    subprocess.run([*tool_argv, str(out / "c"), *(str(out / "b" / key) for key in keys)], check=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work-ms", type=float, default=60.0, help="CPU per tool run (python tool)")
    parser.add_argument("--tool", choices=("python", "true"), default="python")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-pipeline-"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # Bytecode for the runner's modules, as any installed package has it (this environment may set
    # PYTHONDONTWRITEBYTECODE, and every job would then compile them again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "chalicelib")], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        items = make_inputs(folder, args.items)
        if args.tool == "python":
            tool = folder / "work.py"
            tool.write_text(WORK_TOOL)
            tool_argv = [sys.executable, str(tool), str(calibrate(args.work_ms))]
        else:
            tool_argv = ["true"]
        spec = write_spec(folder, items, tool_argv)
        pipeline_s: list[float] = []
        by_hand_s: list[float] = []
        for round_no in range(args.rounds):
            runs = [("pipeline", lambda r=round_no: run_pipeline(folder, spec, r)),
                    ("xargs", lambda r=round_no: run_by_hand(folder, items, tool_argv, args.cores, r))]
            for name, run in runs if round_no % 2 == 0 else runs[::-1]:
                seconds = run()
                (pipeline_s if name == "pipeline" else by_hand_s).append(seconds)
                print(f"round {round_no + 1}: {name:8s} {seconds:7.2f} s", flush=True)
        ratio = median(pipeline_s) / median(by_hand_s)
        # Per-round ratios show how steady the machine was: on a shared one they scatter widely.
        round_ratios = [round(p / x, 3) for p, x in zip(pipeline_s, by_hand_s)]
        print(f"per-round ratios: {round_ratios}")
        jobs = 2 * args.items + 1
        print(f"{jobs} jobs ({args.tool} tool): conveyor run {median(pipeline_s):.2f} s, "
              f"xargs -P {args.cores} {median(by_hand_s):.2f} s, ratio {ratio:.2f}x")
        write_result("pipeline" if args.tool == "python" else "pipeline_true", {
            "items": args.items, "jobs": jobs, "tool": args.tool, "work_ms": args.work_ms if args.tool == "python" else 0,
            "cores": args.cores, "rounds": args.rounds,
            "conveyor_run_s": pipeline_s, "xargs_s": by_hand_s,
            "median_conveyor_run_s": median(pipeline_s), "median_xargs_s": median(by_hand_s), "ratio": ratio,
            "round_ratios": round_ratios,
        })
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
