"""Stage `joint`: merges the per-sample VCFs of the samples that got this far into one multi-sample VCF.

``python -m tools.joint OUTDIR CALLDIR...`` writes ``OUTDIR/joint.vcf.gz``
(+ ``.tbi``) and ``samples.json`` (every sample's qc, align and call figures,
carried forward by the upstream stages), so the report needs only this folder.

Why ``bcftools merge -0`` and not joint calling: the join receives VCFs, not
BAMs, and merging is what a per-sample pipeline does. ``-0`` writes ``0/0``
where a sample had no call, which reads as "reference" (true for this
simulated, evenly covered data; on real data a gVCF workflow would tell
no-coverage from reference). Joint calling would need every BAM and
``bcftools call -p`` (per-sample allele fraction), because the pooled default
``-F 0.05`` misses private heterozygous indels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import ToolError, bcftools, find_one, read_json, run_tool, write_json

STATS = ("qc", "align", "call")


def collect_sample(folder: Path) -> tuple[str, Path, dict[str, Any]]:
    """The sample name, its VCF and its carried stats from one call output folder."""
    if not folder.is_dir():
        raise ToolError(f"call output folder not found: {folder}")
    call = read_json(folder / "call.json")
    stats = {name: read_json(folder / f"{name}.json") for name in STATS if (folder / f"{name}.json").is_file()}
    vcf = folder / call["vcf"] if "vcf" in call else find_one(folder, "*.vcf.gz", "VCF")
    return str(call["sample"]), vcf, stats


def merge(vcfs: list[Path], joint: Path) -> None:
    """One multi-sample VCF; a single input is copied through bcftools (merge needs two)."""
    if len(vcfs) == 1:
        bcftools("view", "-Oz", "-o", str(joint), str(vcfs[0]))
    else:
        bcftools("merge", "-0", "-Oz", "-o", str(joint), *map(str, vcfs))
    bcftools("index", "-t", "-f", str(joint))


def run_joint(out: Path, calls: list[Path]) -> dict[str, Any]:
    """Merges the call folders' VCFs into `out/joint.vcf.gz` and writes `samples.json`."""
    if not calls:
        raise ToolError("no call outputs to merge: every sample failed upstream")
    samples: dict[str, dict[str, Any]] = {}
    vcfs: list[Path] = []
    for folder in calls:
        name, vcf, stats = collect_sample(folder)
        if name in samples:
            raise ToolError(f"sample {name} appears twice among the call outputs")
        samples[name] = stats
        vcfs.append(vcf)
    out.mkdir(parents=True, exist_ok=True)
    joint = out / "joint.vcf.gz"
    merge(vcfs, joint)
    write_json(out / "samples.json", samples)
    summary = {"samples": sorted(samples), "vcf": joint.name, "records": count_records(joint)}
    write_json(out / "joint.json", summary)
    return summary


def count_records(vcf: Path) -> int:
    import pysam

    pysam.set_verbosity(1)  # errors only: htslib warns about bcftools' own MQ header line
    with pysam.VariantFile(str(vcf)) as records:
        return sum(1 for _ in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools.joint", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("calls", type=Path, nargs="*", help="the call stage's output folders")
    args = parser.parse_args(argv)

    def body() -> None:
        summary = run_joint(args.out, args.calls)
        print(f"joint: {len(summary['samples'])} samples, {summary['records']} sites")

    return run_tool("joint", body)


if __name__ == "__main__":
    sys.exit(main())
