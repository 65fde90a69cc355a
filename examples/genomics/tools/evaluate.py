"""Precision and recall of called variants against a truth set, per sample, SNPs and indels apart.

Both sides go through ``bcftools norm -f REF -m -any`` first (left-align and
split multi-allelic records), then a call matches a truth variant when contig,
position, REF and ALT are equal. A matched site whose zygosity (het/hom) also
agrees counts towards genotype concordance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import bcftools

Key = tuple[str, int, str, str]


@dataclass(frozen=True)
class Scores:
    """Counts for one variant class of one sample."""

    true_positives: int
    called: int
    truth: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.called if self.called else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.truth if self.truth else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.true_positives, "fp": self.called - self.true_positives,
                "fn": self.truth - self.true_positives, "called": self.called, "truth": self.truth,
                "precision": round(self.precision, 5), "recall": round(self.recall, 5)}


def classify(ref: str, alt: str) -> str:
    if len(ref) == len(alt) == 1:
        return "snp"
    return "indel" if len(ref) != len(alt) else "other"


def normalise(vcf: Path, reference: Path, out: Path) -> Path:
    bcftools("norm", "-f", str(reference), "-m", "-any", "-Oz", "-o", str(out), str(vcf))
    bcftools("index", "-t", "-f", str(out))  # pysam looks for an index when opening a VCF
    return out


def genotypes(vcf: Path) -> dict[str, dict[Key, str]]:
    """sample -> {(contig, pos, ref, alt): "het"|"hom"} for every sample carrying the ALT allele."""
    import pysam

    pysam.set_verbosity(1)  # errors only: htslib warns about bcftools' own MQ header line
    found: dict[str, dict[Key, str]] = {}
    with pysam.VariantFile(str(vcf)) as records:
        names = list(records.header.samples)
        for name in names:
            found[name] = {}
        for record in records:
            if not record.alts or record.alts[0] in ("*", "<*>"):
                continue
            key = (record.chrom, record.pos, record.ref or "", record.alts[0])
            for name in names:
                alleles = [a for a in (record.samples[name].get("GT") or ()) if a is not None]
                carried = sum(1 for a in alleles if a == 1)
                if carried:
                    found[name][key] = "hom" if carried == len(alleles) else "het"
    return found


def score(calls: dict[Key, str], truth: dict[Key, str]) -> dict[str, Any]:
    """Scores per class plus genotype concordance over the matched sites."""
    result: dict[str, Any] = {}
    for kind in ("snp", "indel"):
        called = {k for k in calls if classify(k[2], k[3]) == kind}
        true = {k for k in truth if classify(k[2], k[3]) == kind}
        result[kind] = Scores(len(called & true), len(called), len(true)).to_dict()
    matched = set(calls) & set(truth)
    agree = sum(1 for k in matched if calls[k] == truth[k])
    result["other_calls"] = sum(1 for k in calls if classify(k[2], k[3]) == "other")
    result["genotype_concordance"] = round(agree / len(matched), 5) if matched else 0.0
    return result


def evaluate(joint_vcf: Path, truth_vcfs: dict[str, Path], reference: Path, work: Path) -> dict[str, Any]:
    """Per-sample scores for every sample of `joint_vcf` that has a truth VCF."""
    work.mkdir(parents=True, exist_ok=True)
    calls = genotypes(normalise(joint_vcf, reference, work / "joint.norm.vcf.gz"))
    results: dict[str, Any] = {}
    for sample, path in sorted(truth_vcfs.items()):
        if sample not in calls:
            continue
        truth_all = genotypes(normalise(path, reference, work / f"{sample}.truth.norm.vcf.gz"))
        truth = truth_all.get(sample) or next(iter(truth_all.values()), {})
        results[sample] = score(calls[sample], truth)
    return results


def overall(results: dict[str, Any]) -> dict[str, Any]:
    """Scores pooled over every evaluated sample."""
    pooled: dict[str, Any] = {}
    for kind in ("snp", "indel"):
        tp = sum(r[kind]["tp"] for r in results.values())
        called = sum(r[kind]["called"] for r in results.values())
        truth = sum(r[kind]["truth"] for r in results.values())
        pooled[kind] = Scores(tp, called, truth).to_dict()
    return pooled
