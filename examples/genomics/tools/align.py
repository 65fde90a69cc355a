"""Stage `align`: maps a sample's read pairs to the reference (minimap2 via mappy) into a sorted, indexed BAM.

``python -m tools.align FILES... OUTDIR [--qc QCDIR] [--reference REF]`` (the
item's files: R1, R2 and the reference FASTA unless ``--reference`` names it) writes
``OUTDIR/<sample>.bam`` (+ ``.bai``), ``align.json`` (mapping rate, properly
paired rate, mean MAPQ) and carries ``qc.json`` forward.

mappy gives alignments, not SAM records, so this module builds them: CIGAR from
mappy's ``[length, op]`` pairs to pysam's ``(op, length)``, soft clips from
``q_st``/``q_en``, minus-strand reads reverse-complemented (qualities reversed),
and pair flags, mate fields and TLEN set. The proper-pair flag matters:
``bcftools mpileup`` skips reads without it by default and then calls nothing.
Every record carries read group ``RG:Z:<sample>`` with ``SM=<sample>``, so merged
VCFs name their samples.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import ToolError, carry_stats, check_read_pair, pick_reads, pick_reference, run_tool, write_json

MAX_INSERT = 1000  # larger spans are not "proper" pairs for this library size
BAM_PAIRED, BAM_PROPER, BAM_UNMAPPED, BAM_MATE_UNMAPPED = 0x1, 0x2, 0x4, 0x8
BAM_REVERSE, BAM_MATE_REVERSE, BAM_READ1, BAM_READ2 = 0x10, 0x20, 0x40, 0x80
SOFT_CLIP = 4
QUERY_OPS = {0, 1, 4, 7, 8}  # M, I, S, =, X consume the read
COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


@dataclass(frozen=True)
class Read:
    """One mate as it came off the sequencer."""

    name: str
    sequence: str
    quality: str


def reverse_complement(sequence: str) -> str:
    return sequence.translate(COMPLEMENT)[::-1]


def to_pysam_cigar(mappy_cigar: list[list[int]], q_st: int, q_en: int, query_length: int,
                   strand: int) -> list[tuple[int, int]]:
    """mappy's `[length, op]` list for the aligned part -> pysam `(op, length)` with soft clips.

    mappy reports q_st/q_en on the read as given; the CIGAR runs along the
    reference. On the minus strand the read is stored reverse-complemented, so
    the clip before the alignment is the read's *end* (query_length - q_en).
    """
    lead, trail = (q_st, query_length - q_en) if strand > 0 else (query_length - q_en, q_st)
    cigar = [(op, length) for length, op in mappy_cigar]
    if lead:
        cigar.insert(0, (SOFT_CLIP, lead))
    if trail:
        cigar.append((SOFT_CLIP, trail))
    consumed = sum(length for op, length in cigar if op in QUERY_OPS)
    if consumed != query_length:
        raise ToolError(f"CIGAR covers {consumed} bases of a {query_length} bp read (mappy hit inconsistent)")
    return cigar


def is_proper(hit1: Any, hit2: Any) -> bool:
    """Same contig, facing each other (FR), within MAX_INSERT."""
    if hit1.ctg != hit2.ctg or hit1.strand == hit2.strand:
        return False
    forward, reverse = (hit1, hit2) if hit1.strand > 0 else (hit2, hit1)
    span = max(hit1.r_en, hit2.r_en) - min(hit1.r_st, hit2.r_st)
    return forward.r_st <= reverse.r_en and span <= MAX_INSERT


def template_length(hit: Any, mate: Any, is_first: bool) -> int:
    """SAM TLEN: the fragment span, positive on the leftmost mate (read 1 on a tie), negative on the other."""
    if hit.ctg != mate.ctg:
        return 0
    span = max(hit.r_en, mate.r_en) - min(hit.r_st, mate.r_st)
    leftmost = hit.r_st < mate.r_st or (hit.r_st == mate.r_st and is_first)
    return span if leftmost else -span


class RecordBuilder:
    """Turns a read pair and its primary hits into two pysam.AlignedSegment records."""

    def __init__(self, header: Any, sample: str) -> None:
        self.header = header
        self.sample = sample
        self.tids = {name: header.get_tid(name) for name in header.references}

    def pair(self, reads: tuple[Read, Read], hits: tuple[Any | None, Any | None]) -> list[Any]:
        proper = all(hits) and is_proper(hits[0], hits[1])
        return [self.record(reads[i], hits[i], hits[1 - i], i == 0, proper) for i in (0, 1)]

    def record(self, read: Read, hit: Any | None, mate: Any | None, is_first: bool, proper: bool) -> Any:
        import pysam

        segment = pysam.AlignedSegment(self.header)
        segment.query_name = read.name
        flag = BAM_PAIRED | (BAM_READ1 if is_first else BAM_READ2)
        sequence, quality = read.sequence, read.quality
        if hit is not None:
            if hit.strand < 0:
                flag |= BAM_REVERSE
                sequence, quality = reverse_complement(sequence), quality[::-1]
            segment.reference_id = self.tids[hit.ctg]
            segment.reference_start = hit.r_st
            segment.mapping_quality = hit.mapq
            segment.cigartuples = to_pysam_cigar(hit.cigar, hit.q_st, hit.q_en, len(read.sequence), hit.strand)
            segment.set_tag("NM", hit.NM)
        else:
            flag |= BAM_UNMAPPED
            segment.mapping_quality = 0
            if mate is not None:  # SAM: an unmapped read takes its mapped mate's position
                segment.reference_id = self.tids[mate.ctg]
                segment.reference_start = mate.r_st
        if mate is not None:
            if mate.strand < 0:
                flag |= BAM_MATE_REVERSE
            segment.next_reference_id = self.tids[mate.ctg]
            segment.next_reference_start = mate.r_st
            if hit is not None:
                segment.template_length = template_length(hit, mate, is_first)
        else:
            flag |= BAM_MATE_UNMAPPED
            if hit is not None:  # mate unmapped: it sits at this read's position
                segment.next_reference_id = self.tids[hit.ctg]
                segment.next_reference_start = hit.r_st
        if proper:
            flag |= BAM_PROPER
        segment.flag = flag
        segment.query_sequence = sequence
        segment.query_qualities = pysam.qualitystring_to_array(quality)
        segment.set_tag("RG", self.sample)
        return segment


def primary_hits(hits: Any) -> tuple[Any | None, Any | None]:
    """The best primary alignment of read 1 and of read 2 (mappy lists hits best first)."""
    best: list[Any | None] = [None, None]
    for hit in hits:
        if hit.is_primary and best[hit.read_num - 1] is None:
            best[hit.read_num - 1] = hit
    return best[0], best[1]


def bam_header(reference: Path, sample: str) -> dict[str, Any]:
    import mappy
    import pysam

    with pysam.FastaFile(str(reference)) as fasta:
        contigs = [{"SN": name, "LN": length} for name, length in zip(fasta.references, fasta.lengths)]
    return {
        "HD": {"VN": "1.6", "SO": "unsorted"},
        "SQ": contigs,
        "RG": [{"ID": sample, "SM": sample, "LB": sample, "PL": "ILLUMINA"}],
        "PG": [{"ID": "mappy", "PN": "mappy", "VN": getattr(mappy, "__version__", "unknown")}],
    }


def align_pairs(reference: Path, r1: Path, r2: Path, unsorted: Path, sample: str) -> dict[str, Any]:
    """Aligns every pair into an unsorted BAM; returns mapping counts."""
    import mappy
    import pysam

    aligner = mappy.Aligner(str(reference), preset="sr")
    if not aligner:
        raise ToolError(f"minimap2 could not index the reference {reference}")
    counts = {"pairs": 0, "reads": 0, "mapped": 0, "proper_pairs": 0, "mapq_sum": 0}
    with pysam.AlignmentFile(str(unsorted), "wb", header=bam_header(reference, sample)) as bam:
        builder = RecordBuilder(bam.header, sample)
        with pysam.FastxFile(str(r1)) as first, pysam.FastxFile(str(r2)) as second:
            for one, two in zip(first, second):
                # qc has checked every record has a sequence and an equally long quality.
                reads = (Read(one.name or "", one.sequence or "", one.quality or ""),
                         Read(two.name or "", two.sequence or "", two.quality or ""))
                hits = primary_hits(aligner.map(one.sequence, two.sequence))
                records = builder.pair(reads, hits)
                for record in records:
                    bam.write(record)
                counts["pairs"] += 1
                counts["reads"] += 2
                counts["mapped"] += sum(hit is not None for hit in hits)
                counts["mapq_sum"] += sum(hit.mapq for hit in hits if hit is not None)
                counts["proper_pairs"] += int(records[0].is_proper_pair)
    return counts


def run_align(reference: Path, r1: Path, r2: Path, out: Path, qc: Path | None = None) -> dict[str, Any]:
    """Aligns, sorts and indexes; writes `<sample>.bam`, `.bai` and `align.json` into `out`."""
    import pysam

    sample = check_read_pair(r1, r2)
    out.mkdir(parents=True, exist_ok=True)
    carry_stats(qc, out, ("qc",))
    unsorted = out / f"{sample}.unsorted.bam"
    bam = out / f"{sample}.bam"
    counts = align_pairs(reference, r1, r2, unsorted, sample)
    if counts["pairs"] == 0:
        raise ToolError(f"no read pairs in {r1.name}/{r2.name}")
    try:
        pysam.sort("-o", str(bam), "-T", str(out / f"{sample}.sorttmp"), str(unsorted), catch_stdout=False)
        pysam.index(str(bam), catch_stdout=False)
    except pysam.utils.SamtoolsError as err:
        raise ToolError(f"samtools failed on {sample}: {err}") from err
    unsorted.unlink()
    stats = {
        "sample": sample,
        "pairs": counts["pairs"],
        "reads": counts["reads"],
        "mapped_reads": counts["mapped"],
        "mapping_rate": round(counts["mapped"] / counts["reads"], 5),
        "proper_pair_rate": round(counts["proper_pairs"] / counts["pairs"], 5),
        "mean_mapq": round(counts["mapq_sum"] / max(counts["mapped"], 1), 2),
        "bam": bam.name,
    }
    write_json(out / "align.json", stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools.align", description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="reference FASTA or a folder holding ref.fa (default: the FASTA among FILES)")
    parser.add_argument("--qc", type=Path, help="the qc stage's output folder for this sample (carried forward)")
    parser.add_argument("inputs", type=Path, nargs="+", help="the item's files: R1, R2 FASTQ (and the reference)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    def body() -> None:
        reference = pick_reference([args.reference] if args.reference else [str(p) for p in args.inputs])
        r1, r2 = pick_reads(args.inputs)
        stats = run_align(reference, r1, r2, args.out, args.qc)
        print(f"align: {stats['sample']}: {stats['mapped_reads']}/{stats['reads']} reads mapped "
              f"({stats['mapping_rate']:.2%}), {stats['proper_pair_rate']:.2%} properly paired")

    return run_tool("align", body)


if __name__ == "__main__":
    sys.exit(main())
