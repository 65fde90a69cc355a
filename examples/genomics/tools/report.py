"""Stage `report`: one self-contained HTML page (inline SVG plots) plus report.json for the run.

``python -m tools.report --joint DIR --out OUTDIR [--inputs FILES...]
[--reference FA] [--truth VCF ...] [--expected S01 ...] [--failures JSON]``
reads the joint stage's folder (joint VCF and every sample's carried
qc/align/call figures), scores each sample against its truth VCF when one is
given, and lists the samples that did not reach the join (expected but absent),
with the reason when one is known.

``--inputs`` takes every item's files (the pipeline passes ``{item}``): the
reference FASTA, the ``<sample>.truth.vcf.gz`` files and the read file names
(which say which samples the run had) are found among them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from html import escape
from pathlib import Path
from typing import Any

from . import evaluate, svg
from .common import FASTA_SUFFIXES, READ_FILE, ToolError, read_json, resolve_reference, run_tool, write_json

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}.bad{color:#b00020}.ok{color:#1b7f3b}
.plots{display:flex;flex-wrap:wrap;gap:12px}.note{color:#555;font-size:13px}code{background:#f4f4f4;padding:1px 4px}"""


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def truth_by_sample(paths: list[Path]) -> dict[str, Path]:
    """`S01.truth.vcf.gz` or `S01.vcf.gz` -> {"S01": path}."""
    found = {}
    for path in paths:
        name = path.name
        for suffix in (".truth.vcf.gz", ".vcf.gz", ".truth.vcf", ".vcf"):
            if name.endswith(suffix):
                found[name[: -len(suffix)]] = path
                break
        else:
            raise ToolError(f"truth file {name!r} is not a VCF (<sample>.truth.vcf.gz)")
    return found


def classify_inputs(paths: list[Path]) -> dict[str, Any]:
    """Reference (first FASTA), truth VCFs and sample names (from read files) among item files."""
    found: dict[str, Any] = {"reference": None, "truth": [], "samples": set()}
    for path in paths:
        name = path.name
        match = READ_FILE.match(name)
        if match:
            found["samples"].add(match.group("sample"))
        elif name.endswith(".truth.vcf.gz"):
            found["truth"].append(path)
        elif name.endswith(FASTA_SUFFIXES) and found["reference"] is None:
            found["reference"] = str(path)
    return found


def sample_rows(samples: dict[str, Any], scores: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per sample that reached the join."""
    rows = []
    for name in sorted(samples):
        stats, score = samples[name], scores.get(name)
        qc, align, call = stats.get("qc", {}), stats.get("align", {}), stats.get("call", {})
        rows.append({
            "sample": name,
            "pairs": qc.get("pairs", align.get("pairs")),
            "mean_quality": qc.get("mean_quality"),
            "q30": ((qc.get("r1", {}).get("q30_fraction", 0) + qc.get("r2", {}).get("q30_fraction", 0)) / 2
                    if qc else None),
            "mapping_rate": align.get("mapping_rate"),
            "proper_pair_rate": align.get("proper_pair_rate"),
            "snps": call.get("snps"),
            "indels": call.get("indels"),
            "het": call.get("het"),
            "hom_alt": call.get("hom_alt"),
            "score": score,
        })
    return rows


def table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def samples_table(rows: list[dict[str, Any]]) -> str:
    cells = []
    for r in rows:
        s = r["score"]
        cells.append([
            escape(r["sample"]), f"{r['pairs']:,}" if r["pairs"] is not None else "-",
            f"{r['mean_quality']:.1f}" if r["mean_quality"] is not None else "-", percent(r["q30"]),
            percent(r["mapping_rate"]), percent(r["proper_pair_rate"]),
            str(r["snps"]), str(r["indels"]), f"{r['het']}/{r['hom_alt']}",
            percent(s["snp"]["precision"]) if s else "-", percent(s["snp"]["recall"]) if s else "-",
            percent(s["indel"]["precision"]) if s else "-", percent(s["indel"]["recall"]) if s else "-",
            percent(s["genotype_concordance"]) if s else "-",
        ])
    return table(["sample", "read pairs", "mean BQ", "Q30", "mapped", "proper pairs", "SNPs", "indels",
                  "het/hom", "SNP precision", "SNP recall", "indel precision", "indel recall",
                  "GT concordance"], cells)


def failures_section(missing: list[str], failures: dict[str, str]) -> str:
    if not missing:
        return '<p class="ok">Every sample reached the joint VCF.</p>'
    rows = [[f'<span class="bad">{escape(name)}</span>',
             escape(failures.get(name, "did not reach the join (failed in an earlier stage; see the run summary)"))]
            for name in missing]
    return (f'<p class="bad">{len(missing)} of the run\'s samples failed and are not in the joint VCF '
            "or the figures below.</p>" + table(["sample", "reason"], rows))


def plots(rows: list[dict[str, Any]], samples: dict[str, Any]) -> str:
    names = [r["sample"] for r in rows]
    charts = [
        svg.bar_chart("Read pairs per sample", names, {"pairs": [r["pairs"] or 0 for r in rows]}),
        svg.bar_chart("Mapping rate", names, {"mapped": [r["mapping_rate"] or 0 for r in rows],
                                              "proper pairs": [r["proper_pair_rate"] or 0 for r in rows]},
                      y_max=1.0, y_format=".0%"),
        svg.bar_chart("Variants called", names, {"SNPs": [r["snps"] or 0 for r in rows],
                                                 "indels": [r["indels"] or 0 for r in rows]}),
    ]
    scored = [r for r in rows if r["score"]]
    if scored:
        charts.append(svg.bar_chart(
            "Precision and recall against the truth (axis zoomed)", [r["sample"] for r in scored],
            {"SNP precision": [r["score"]["snp"]["precision"] for r in scored],
             "SNP recall": [r["score"]["snp"]["recall"] for r in scored],
             "indel precision": [r["score"]["indel"]["precision"] for r in scored],
             "indel recall": [r["score"]["indel"]["recall"] for r in scored]},
            y_min=min(0.9, *(v for r in scored for k in ("snp", "indel") for v in
                             (r["score"][k]["precision"], r["score"][k]["recall"]))),
            y_max=1.0, y_format=".1%"))
    quality = {name: samples[name]["qc"]["r1"]["mean_quality_by_position"]
               for name in names if "qc" in samples[name]}
    if quality:
        charts.append(svg.line_chart("Mean base quality by cycle (R1)", quality, "cycle", y_max=40))
    return '<div class="plots">' + "".join(charts) + "</div>"


def render(title: str, rows: list[dict[str, Any]], samples: dict[str, Any], missing: list[str],
           failures: dict[str, str], pooled: dict[str, Any] | None, joint: dict[str, Any]) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    total = len(rows) + len(missing)
    accuracy = ""
    if pooled:
        accuracy = ("<h2>Accuracy against the truth (all samples pooled)</h2>" + table(
            ["class", "truth", "called", "true positives", "precision", "recall"],
            [[kind, str(p["truth"]), str(p["called"]), str(p["tp"]), percent(p["precision"]), percent(p["recall"])]
             for kind, p in (("SNPs", pooled["snp"]), ("indels", pooled["indel"]))])
            + '<p class="note">Calls and truth both normalised with <code>bcftools norm -f ref -m -any</code>; '
              "a call matches when contig, position, REF and ALT agree.</p>")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p class="note">Generated {stamp}. {len(rows)} of {total} samples in the joint VCF ({joint.get('records', '?')} sites).</p>
<h2>Failed samples</h2>{failures_section(missing, failures)}
{accuracy}
<h2>Per sample</h2>{samples_table(rows)}
<h2>Plots</h2>{plots(rows, samples)}
</body></html>
"""


def build_report(joint_dir: Path, out: Path, reference: Path | None, truth: dict[str, Path],
                 expected: list[str], failures: dict[str, str], title: str = "Variant calling report") -> dict[str, Any]:
    """Writes `out/report.html` and `out/report.json`; returns the JSON content."""
    samples = read_json(joint_dir / "samples.json")
    joint = read_json(joint_dir / "joint.json")
    scores: dict[str, Any] = {}
    if truth:
        if reference is None:
            raise ToolError("--truth needs --reference (both sides are normalised against it)")
        scores = evaluate.evaluate(joint_dir / joint["vcf"], truth, reference, out / "work")
    rows = sample_rows(samples, scores)
    missing = sorted((set(expected) | set(failures)) - set(samples))
    pooled = evaluate.overall(scores) if scores else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(render(title, rows, samples, missing, failures, pooled, joint))
    summary = {"samples": [r["sample"] for r in rows], "failed": {m: failures.get(m) for m in missing},
               "per_sample": {r["sample"]: {k: v for k, v in r.items() if k != "sample"} for r in rows},
               "overall": pooled}
    write_json(out / "report.json", summary)
    for leftover in (out / "work").glob("*") if (out / "work").is_dir() else ():
        leftover.unlink()
    if (out / "work").is_dir():
        (out / "work").rmdir()
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools.report", description=__doc__.splitlines()[0])
    parser.add_argument("--joint", type=Path, required=True, help="the joint stage's output folder")
    parser.add_argument("--inputs", type=Path, nargs="*", default=[],
                        help="every item's files: reference, truth VCFs and reads (names only) are taken from them")
    parser.add_argument("--reference", help="reference FASTA (or folder); needed with --truth")
    parser.add_argument("--truth", type=Path, nargs="*", default=[], help="truth VCFs, <sample>.truth.vcf.gz")
    parser.add_argument("--expected", nargs="*", default=[], help="every sample of the run")
    parser.add_argument("--failures", type=Path, help="JSON {sample: reason} for samples that failed")
    parser.add_argument("--title", default="Variant calling report")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.html and report.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> None:
        found = classify_inputs(args.inputs)
        reference_at = args.reference or found["reference"]
        reference = resolve_reference(reference_at) if reference_at else None
        failures = read_json(args.failures) if args.failures else {}
        truth = truth_by_sample(args.truth or found["truth"])
        expected = sorted(set(args.expected) | set(found["samples"]))
        summary = build_report(args.joint, args.out, reference, truth, expected, failures, args.title)
        pooled = summary["overall"]
        accuracy = (f"; SNP P/R {pooled['snp']['precision']:.3f}/{pooled['snp']['recall']:.3f}, "
                    f"indel P/R {pooled['indel']['precision']:.3f}/{pooled['indel']['recall']:.3f}") if pooled else ""
        failed = f"; failed: {', '.join(summary['failed'])}" if summary["failed"] else ""
        print(f"report: {args.out / 'report.html'} ({len(summary['samples'])} samples{accuracy}{failed})")

    return run_tool("report", body)


if __name__ == "__main__":
    sys.exit(main())
