"""Seeded data generator: a reference genome, per-sample paired reads and truth VCFs.

Writes, under ``--out``::

    reference/ref.fa (+ .fai)          one random contig
    reads/<S>_R1.fastq.gz, _R2         2x150 bp pairs simulated from the sample's two haplotypes
    truth/<S>.truth.vcf.gz (+ .tbi)       the SNPs and 1-5 bp indels the sample carries (het or hom)
    samples.txt                        the sample names, one per line
    items.tsv                          the pipeline's items manifest: one line per sample,
                                       key, R1, R2, reference (+ .fai) and truth VCF,
                                       paths relative to this folder (so the same file
                                       works after copying the folder to s3://)

Variants come from a shared population pool, so samples share some sites and
the joint VCF has real multi-sample records. Reads carry Phred qualities drawn
per base (falling along the read) and substitution errors drawn *from* those
qualities, so the qualities are calibrated the way a caller expects.

``python -m examples.genomics.simulate --out DIR [--samples 8] [--genome-size 200000]
[--depth 30] [--seed 7] [--malformed S03]``
"""

from __future__ import annotations

import argparse
import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

READ_LENGTH = 150
FRAGMENT_MEAN = 350
FRAGMENT_SD = 40
CONTIG = "chr1"
ITEMS_MANIFEST = "items.tsv"
# Keep variants away from the contig ends (coverage falls off there) and from
# each other (clustered variants normalise into complex records that no longer
# compare one to one with the truth).
EDGE_MARGIN = 500
MIN_SPACING = 60
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")


@dataclass(frozen=True)
class Variant:
    """One pool variant: 1-based position, REF and ALT alleles as on the reference."""

    pos: int
    ref: str
    alt: str


@dataclass(frozen=True)
class SampleVariant:
    """A variant a sample carries, on haplotype 0, 1 or both (hom)."""

    variant: Variant
    haplotypes: tuple[int, ...]

    @property
    def genotype(self) -> tuple[int, int]:
        if len(self.haplotypes) == 2:
            return (1, 1)
        return (1, 0) if self.haplotypes[0] == 0 else (0, 1)


def sample_names(count: int) -> list[str]:
    """Sample names S01, S02, ...; no underscores, so `<S>_R1.fastq.gz` splits cleanly."""
    return [f"S{i + 1:02d}" for i in range(count)]


def random_reference(rng: np.random.Generator, size: int) -> str:
    return BASES[rng.integers(0, 4, size)].tobytes().decode()


def variant_pool(rng: np.random.Generator, reference: str, count: int) -> list[Variant]:
    """Spaced random sites; about 80% SNPs, the rest 1-5 bp insertions and deletions."""
    size = len(reference)
    slots = np.arange(EDGE_MARGIN, size - EDGE_MARGIN, MIN_SPACING)
    count = min(count, len(slots))
    chosen = np.sort(rng.choice(slots, size=count, replace=False))
    chosen = chosen + rng.integers(0, MIN_SPACING // 3, size=count)
    pool = []
    for start in chosen.tolist():
        ref_base = reference[start]
        kind = rng.random()
        if kind < 0.8:
            alt = "ACGT"[(("ACGT".index(ref_base)) + int(rng.integers(1, 4))) % 4]
            pool.append(Variant(start + 1, ref_base, alt))
        elif kind < 0.9:
            inserted = random_reference(rng, int(rng.integers(1, 6)))
            pool.append(Variant(start + 1, ref_base, ref_base + inserted))
        else:
            length = int(rng.integers(1, 6))
            pool.append(Variant(start + 1, reference[start : start + 1 + length], ref_base))
    return pool


def sample_variants(rng: np.random.Generator, pool: list[Variant], carrier_rate: float) -> list[SampleVariant]:
    """Each pool variant is carried with `carrier_rate`; 40% of carriers are homozygous."""
    carried = []
    for variant in pool:
        if rng.random() >= carrier_rate:
            continue
        if rng.random() < 0.4:
            carried.append(SampleVariant(variant, (0, 1)))
        else:
            carried.append(SampleVariant(variant, (int(rng.integers(0, 2)),)))
    return carried


def haplotype(reference: str, variants: list[SampleVariant], index: int) -> str:
    """The reference with this haplotype's variants applied (right to left keeps positions valid)."""
    sequence = reference
    for carried in sorted(variants, key=lambda v: v.variant.pos, reverse=True):
        if index not in carried.haplotypes:
            continue
        v = carried.variant
        start = v.pos - 1
        sequence = sequence[:start] + v.alt + sequence[start + len(v.ref) :]
    return sequence


def quality_profile(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Phred scores per base: ~Q37 at the 5' end falling to ~Q25 at the 3' end, with noise and dips."""
    position = np.arange(shape[1]) / shape[1]
    mean = 37.0 - 12.0 * position**2
    quals = rng.normal(mean, 3.0, size=shape)
    dips = rng.random(shape) < 0.01  # occasional poor cycles
    quals[dips] = rng.integers(3, 12, size=int(dips.sum()))
    return np.clip(np.rint(quals), 2, 41).astype(np.uint8)


def add_errors(rng: np.random.Generator, reads: np.ndarray, quals: np.ndarray) -> None:
    """Substitutes bases in place with probability 10^(-Q/10) (to a different base)."""
    error = rng.random(reads.shape) < np.power(10.0, -quals.astype(np.float64) / 10.0)
    if not error.any():
        return
    current = np.searchsorted(BASES, reads[error])
    shifted = (current + rng.integers(1, 4, size=current.size)) % 4
    reads[error] = BASES[shifted]


def reverse_complement(seq: bytes) -> bytes:
    return seq.translate(COMPLEMENT)[::-1]


def simulate_pairs(
    rng: np.random.Generator, haplotypes: list[str], pairs: int
) -> tuple[list[bytes], list[bytes], np.ndarray, np.ndarray]:
    """Read 1 and read 2 sequences plus quality arrays for `pairs` fragments."""
    r1, r2 = [], []
    encoded = [h.encode() for h in haplotypes]
    lengths = np.clip(rng.normal(FRAGMENT_MEAN, FRAGMENT_SD, pairs).astype(int), READ_LENGTH + 20, None)
    which = rng.integers(0, len(encoded), pairs)
    flip = rng.random(pairs) < 0.5
    for i in range(pairs):
        hap = encoded[int(which[i])]
        length = min(int(lengths[i]), len(hap))
        start = int(rng.integers(0, len(hap) - length + 1))
        fragment = hap[start : start + length]
        if flip[i]:
            fragment = reverse_complement(fragment)
        r1.append(fragment[:READ_LENGTH])
        r2.append(reverse_complement(fragment[-READ_LENGTH:]))
    q1 = quality_profile(rng, (pairs, READ_LENGTH))
    q2 = quality_profile(rng, (pairs, READ_LENGTH))
    seq1 = np.frombuffer(b"".join(r1), dtype=np.uint8).reshape(pairs, READ_LENGTH).copy()
    seq2 = np.frombuffer(b"".join(r2), dtype=np.uint8).reshape(pairs, READ_LENGTH).copy()
    add_errors(rng, seq1, q1)
    add_errors(rng, seq2, q2)
    return [row.tobytes() for row in seq1], [row.tobytes() for row in seq2], q1, q2


def write_fastq(path: Path, sample: str, seqs: list[bytes], quals: np.ndarray, truncate: bool = False) -> None:
    """Gzipped FASTQ; `truncate` cuts the last record's quality short (a malformed file)."""
    phred = (quals + 33).astype(np.uint8)
    chunks = []
    for i, seq in enumerate(seqs):
        qual = phred[i].tobytes()
        if truncate and i == len(seqs) - 1:
            qual = qual[: len(qual) // 2]
        chunks.append(b"@%s:%d\n%s\n+\n%s\n" % (sample.encode(), i, seq, qual))
    # mtime=0 makes the bytes depend on the seed only.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=4) as out:
        out.write(b"".join(chunks))


def write_reference(path: Path, reference: str) -> None:
    import pysam

    lines = [reference[i : i + 60] for i in range(0, len(reference), 60)]
    path.write_text(f">{CONTIG}\n" + "\n".join(lines) + "\n")
    pysam.faidx(str(path))


def write_truth(path: Path, sample: str, reference_length: int, variants: list[SampleVariant]) -> None:
    """A bgzipped, tabix-indexed single-sample VCF of what the sample really carries."""
    import pysam

    header = pysam.VariantHeader()
    header.add_line(f"##contig=<ID={CONTIG},length={reference_length}>")
    header.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header.add_sample(sample)
    plain = path.with_suffix("")  # truth/S01.vcf
    with pysam.VariantFile(str(plain), "w", header=header) as out:
        for carried in sorted(variants, key=lambda v: v.variant.pos):
            v = carried.variant
            record = out.new_record(contig=CONTIG, start=v.pos - 1, alleles=(v.ref, v.alt))
            record.samples[sample]["GT"] = carried.genotype
            record.samples[sample].phased = True
            out.write(record)
    pysam.tabix_index(str(plain), preset="vcf", force=True)  # writes <plain>.gz and .gz.tbi


@dataclass(frozen=True)
class SimulationConfig:
    """What to generate; the defaults are the demo's data set."""

    out: Path
    samples: int = 8
    genome_size: int = 200_000
    depth: float = 30.0
    seed: int = 7
    malformed: tuple[str, ...] = ()
    variants_per_kb: float = 1.2
    carrier_rate: float = 0.6


def simulate(config: SimulationConfig, log=print) -> list[str]:
    """Generates the whole data set; returns the sample names."""
    rng = np.random.default_rng(config.seed)
    names = sample_names(config.samples)
    unknown = sorted(set(config.malformed) - set(names))
    if unknown:
        raise ValueError(f"--malformed names unknown sample(s) {unknown}; samples are {names[0]}..{names[-1]}")
    for folder in ("reference", "reads", "truth"):
        (config.out / folder).mkdir(parents=True, exist_ok=True)
    reference = random_reference(rng, config.genome_size)
    write_reference(config.out / "reference" / "ref.fa", reference)
    pool_size = int(config.genome_size / 1000 * config.variants_per_kb / config.carrier_rate)
    pool = variant_pool(rng, reference, pool_size)
    for name in names:
        # One child generator per sample: a sample's data does not depend on how many come after it.
        sample_rng = np.random.default_rng([config.seed, int(name[1:])])
        # Libraries never come out equally deep: each sample gets 85-115% of the asked depth.
        depth = config.depth * sample_rng.uniform(0.85, 1.15)
        pairs = int(depth * config.genome_size / (2 * READ_LENGTH))
        carried = sample_variants(sample_rng, pool, config.carrier_rate)
        haplotypes = [haplotype(reference, carried, 0), haplotype(reference, carried, 1)]
        r1, r2, q1, q2 = simulate_pairs(sample_rng, haplotypes, pairs)
        broken = name in config.malformed
        write_fastq(config.out / "reads" / f"{name}_R1.fastq.gz", name, r1, q1)
        write_fastq(config.out / "reads" / f"{name}_R2.fastq.gz", name, r2, q2, truncate=broken)
        write_truth(config.out / "truth" / f"{name}.truth.vcf.gz", name, len(reference), carried)
        note = "  (malformed R2)" if broken else ""
        log(f"  {name}: {pairs} pairs, {len(carried)} variants{note}")
    (config.out / "samples.txt").write_text("\n".join(names) + "\n")
    write_items_manifest(config.out / ITEMS_MANIFEST, names)
    return names


def write_items_manifest(path: Path, names: list[str]) -> None:
    """`key<TAB>file...` per sample. Every item carries the shared reference and its own truth,
    because the runner stages exactly an item's files into a job (locally and from S3 alike)."""
    lines = ["# sample\tR1\tR2\treference\treference index\ttruth"]
    for name in names:
        files = [f"reads/{name}_R1.fastq.gz", f"reads/{name}_R2.fastq.gz", "reference/ref.fa",
                 "reference/ref.fa.fai", f"truth/{name}.truth.vcf.gz"]
        lines.append("\t".join([name, *files]))
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> SimulationConfig:
    parser = argparse.ArgumentParser(prog="simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the data set into")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--genome-size", type=int, default=200_000, help="reference length in bp")
    parser.add_argument("--depth", type=float, default=30.0, help="mean coverage per sample")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--malformed", action="append", default=[], metavar="SAMPLE",
                        help="write a truncated R2 FASTQ for this sample (repeatable)")
    args = parser.parse_args(argv)
    if not 1 <= args.samples <= 99:
        parser.error("--samples must be between 1 and 99")
    if args.genome_size < 5 * EDGE_MARGIN:
        parser.error(f"--genome-size must be at least {5 * EDGE_MARGIN} bp")
    if args.depth <= 0:
        parser.error("--depth must be positive")
    return SimulationConfig(out=args.out, samples=args.samples, genome_size=args.genome_size,
                            depth=args.depth, seed=args.seed, malformed=tuple(args.malformed))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        simulate(config)
    except ValueError as err:
        print(f"simulate: {err}", file=sys.stderr)
        return 2
    print(f"data set written to {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
