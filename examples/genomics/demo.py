"""The main job: simulate a data set if missing, run the variant-calling pipeline on the embedded engine, show the report.

``python -m examples.genomics.demo`` (what ``make demo`` runs) goes through
exactly the code path of ``conveyor run examples/genomics/pipeline.yaml
--items <data>/items.tsv``: it calls the CLI's ``main`` with those arguments,
so the live progress, the end-of-run summary and the exit status are the
CLI's. Options change the data set (``--samples``, ``--genome-size``,
``--depth``, ``--seed``) or break one sample (``--malformed S03``) to show a
failed chain: that sample fails in qc with its reason, the others finish, the
report names it, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from chalicelib import cli
from chalicelib.commands.engine import default_data_dir
from chalicelib.pipeline.runs import epoch_ms, new_run_id
from examples.genomics.simulate import ITEMS_MANIFEST, SimulationConfig, simulate

HERE = Path(__file__).resolve().parent
SPEC = HERE / "pipeline.yaml"
PIPELINE = "variant-calling"


def data_folder(root: Path, config: SimulationConfig) -> Path:
    """One folder per data-set recipe, so changing an option never reuses stale data."""
    name = f"n{config.samples}-{config.genome_size // 1000}kb-{config.depth:g}x-seed{config.seed}"
    if config.malformed:
        name += "-malformed-" + "-".join(config.malformed)
    return root / name


def ensure_data(config: SimulationConfig) -> Path:
    """Simulates the data set unless a complete one is already there; returns the items manifest."""
    manifest = config.out / ITEMS_MANIFEST
    if manifest.is_file():
        print(f"data: reusing {config.out}")
        return manifest
    print(f"data: simulating {config.samples} samples, {config.genome_size:,} bp reference, "
          f"{config.depth:g}x 2x150 bp pairs into {config.out}")
    started = time.monotonic()
    simulate(config)
    print(f"data: done in {time.monotonic() - started:.1f}s")
    return manifest


def summarise(report_dir: Path) -> None:
    """Prints where the report is and its headline figures."""
    html, figures = report_dir / "report.html", report_dir / "report.json"
    if not html.is_file():
        print("no report was written (the run failed before the report stage; see the summary above)")
        return
    summary = json.loads(figures.read_text())
    overall = summary.get("overall")
    if overall:
        print(f"accuracy vs truth (pooled): SNP precision {overall['snp']['precision']:.4f} "
              f"recall {overall['snp']['recall']:.4f}; indel precision {overall['indel']['precision']:.4f} "
              f"recall {overall['indel']['recall']:.4f}")
    if summary.get("failed"):
        print(f"failed samples named in the report: {', '.join(summary['failed'])}")
    print(f"report: {html}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.genomics.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--genome-size", type=int, default=200_000)
    parser.add_argument("--depth", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--malformed", action="append", default=[], metavar="SAMPLE",
                        help="truncate this sample's R2 FASTQ (e.g. S03) to see a failed chain")
    parser.add_argument("--data-root", type=Path, default=HERE / "data", help="where data sets are kept")
    # The CLI's own default, so `conveyor runs`, `run-status` and `rerun` from the same folder see the demo's run.
    parser.add_argument("--data-dir", type=Path, default=Path(default_data_dir()),
                        help="engine state, logs and run outputs")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SimulationConfig(out=Path("."), samples=args.samples, genome_size=args.genome_size,
                              depth=args.depth, seed=args.seed, malformed=tuple(args.malformed))
    config = SimulationConfig(**{**config.__dict__, "out": data_folder(args.data_root, config)})
    started = time.monotonic()
    try:
        manifest = ensure_data(config)
    except ValueError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 2
    run_id = new_run_id(PIPELINE, epoch_ms())
    command = ["run", str(SPEC), "--items", str(manifest), "--data-dir", str(args.data_dir), "--run-id", run_id]
    if args.no_progress:
        command.append("--no-progress")
    print("pipeline: conveyor " + " ".join(command))
    code = cli.main(command)
    summarise(args.data_dir.resolve() / "runs" / run_id / "report")
    print(f"demo: finished in {time.monotonic() - started:.1f}s with exit status {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
