"""Stage `call`: per-sample variant calls from the sorted BAM with bcftools mpileup | call -mv.

``python -m tools.call ALIGNDIR OUTDIR --reference REF...`` (a FASTA, a folder
holding ref.fa, or the item's files, of which the FASTA is used) writes
``OUTDIR/<sample>.vcf.gz`` (+ ``.tbi``) and ``call.json`` (SNP and indel
counts), and carries ``qc.json``/``align.json`` forward for the join.

An empty call set is a failure, not a result: the usual cause is reads that
mpileup filtered out (for example pairs without the proper-pair flag), and it
produces zero calls without an error. pysam's bcftools wrappers capture stdout
into their own file and ignore ``-o`` unless ``catch_stdout=False``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import ToolError, bcftools, carry_stats, find_one, pick_reference, read_json, run_tool, write_json


def count_variants(vcf: Path) -> dict[str, int]:
    """SNP, indel and other record counts, plus heterozygous/homozygous-alt genotypes."""
    import pysam

    pysam.set_verbosity(1)  # errors only: htslib warns about bcftools' own MQ header line
    counts = {"records": 0, "snps": 0, "indels": 0, "other": 0, "het": 0, "hom_alt": 0}
    with pysam.VariantFile(str(vcf)) as calls:
        for record in calls:
            counts["records"] += 1
            alts, ref = record.alts or (), record.ref or ""
            if all(len(alt) == len(ref) == 1 for alt in alts):
                counts["snps"] += 1
            elif all(len(alt) != len(ref) for alt in alts):
                counts["indels"] += 1
            else:
                counts["other"] += 1
            for sample in record.samples.values():
                genotype = [a for a in (sample.get("GT") or ()) if a is not None]
                if genotype and any(genotype) and len(set(genotype)) > 1:
                    counts["het"] += 1
                elif genotype and all(a > 0 for a in genotype):
                    counts["hom_alt"] += 1
    return counts


def run_call(reference: Path, align: Path, out: Path) -> dict[str, Any]:
    """Calls variants for the one BAM in `align`; writes the VCF, its index and `call.json`."""
    bam = find_one(align, "*.bam", "sorted BAM")
    sample = read_json(align / "align.json").get("sample", bam.stem)
    out.mkdir(parents=True, exist_ok=True)
    carry_stats(align, out, ("qc", "align"))
    pileup = out / f"{sample}.pileup.bcf"
    vcf = out / f"{sample}.vcf.gz"
    # -a AD,DP: allele depths for the report; -Ou: uncompressed BCF between the two steps.
    bcftools("mpileup", "-f", str(reference), "-a", "AD,DP", "-Ou", "-o", str(pileup), str(bam))
    bcftools("call", "-mv", "-Oz", "-o", str(vcf), str(pileup))
    pileup.unlink()
    bcftools("index", "-t", "-f", str(vcf))
    counts = count_variants(vcf)
    if counts["records"] == 0:
        raise ToolError(
            f"no variants called for {sample}: reads were probably filtered out by mpileup "
            "(unpaired/improper pairs, low MAPQ) or the BAM is empty"
        )
    stats = {"sample": sample, "vcf": vcf.name, **counts}
    write_json(out / "call.json", stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools.call", description=__doc__.splitlines()[0])
    parser.add_argument("align", type=Path, help="the align stage's output folder for this sample")
    parser.add_argument("out", type=Path)
    parser.add_argument("--reference", required=True, nargs="+",
                        help="reference FASTA or a folder holding ref.fa, or the item's files (the FASTA is used)")
    args = parser.parse_args(argv)

    def body() -> None:
        stats = run_call(pick_reference(args.reference), args.align, args.out)
        print(f"call: {stats['sample']}: {stats['snps']} SNPs, {stats['indels']} indels")

    return run_tool("call", body)


if __name__ == "__main__":
    sys.exit(main())
