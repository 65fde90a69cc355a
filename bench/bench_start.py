"""Interpreter start per job: this virtualenv as installed versus a plain-path ("compat") install.

Every pipeline job starts a fresh `python -m chalicelib.runner`, and `site` runs at each start:
with setuptools' default editable install it imports the editable finder (and registers it on
sys.meta_path); compat mode (deprecated by setuptools, so `make setup` does not use it) holds the project's path in a .pth and
nothing is imported. This script builds a throwaway virtualenv that sees the same packages
through plain paths (this venv's site-packages and the project root in one .pth, so no .pth of
the shared site-packages runs) and times both, alternating, by the CPU each start used:

    `python -c pass`                     the floor of any job
    `python -m chalicelib.runner`        the runner's start, up to its argument check

    python bench/bench_start.py [--rounds 40]

Results go to bench/results/start.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import site
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import median, write_result

ROOT = Path(__file__).resolve().parent.parent
# The runner without arguments stops at its argument check (exit 2), after its imports.
COMMANDS = {"bare": ["-c", "pass"], "runner": ["-m", "chalicelib.runner"]}


def plain_path_venv(folder: Path) -> str:
    """A venv whose only .pth lists this venv's site-packages and the project root."""
    venv.EnvBuilder(with_pip=False).create(folder)
    target = next((folder / "lib").glob("python*/site-packages"))
    (target / "conveyor-paths.pth").write_text("\n".join([*site.getsitepackages(), str(ROOT)]) + "\n")
    return str(folder / "bin" / "python")


def child_cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-start-"))
    # Both import this checkout's chalicelib (PYTHONPATH wins over either install); what differs
    # is what `site` does at start.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        pythons = {"installed": sys.executable, "plain_path": plain_path_venv(folder / "venv")}
        cpu: dict[str, list[float]] = {f"{p}_{c}": [] for p in pythons for c in COMMANDS}
        load_before = os.getloadavg()
        for round_no in range(args.rounds):
            order = list(pythons.items()) if round_no % 2 == 0 else list(pythons.items())[::-1]
            for name, python in order:
                for command, argv in COMMANDS.items():
                    cpu[f"{name}_{command}"].append(child_cpu_ms([python, *argv], env))
        medians = {key: median(values) for key, values in cpu.items()}
        for command in COMMANDS:
            print(f"{command:7s} start: as installed {medians[f'installed_{command}']:.1f} ms CPU, "
                  f"plain path {medians[f'plain_path_{command}']:.1f} ms CPU")
        print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
        write_result("start", {"rounds": args.rounds, "installed_python": sys.executable,
                               "load_before": load_before, "load_after": os.getloadavg(),
                               "median_cpu_ms": medians, "cpu_ms": cpu})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
