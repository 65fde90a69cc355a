"""Stage `qc`: checks a sample's FASTQ pair and summarises read counts and base qualities.

``python -m tools.qc FILES... OUTDIR`` (the item's files: its R1 and R2 FASTQ,
other files ignored) writes ``OUTDIR/qc.json``. A malformed pair
(truncated gzip, a record whose quality is missing or not as long as its
sequence, R1 and R2 with different counts or names, letters other than ACGTN)
fails with one line naming the file, the record and what was wrong, and exit 1,
so the sample's chain stops here with a reason a person can act on.

Why pysam.FastxFile and not mappy's reader: mappy never raises, it stops early
or drops records silently. FastxFile raises on a truncated quality line and on
a truncated gzip stream, and returns quality None for a record without one.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import ToolError, check_read_pair, pick_reads, run_tool, write_json

MAX_READ_LENGTH = 1000
VALID_BASES = "ACGTNacgtn"


@dataclass
class MateSummary:
    """Running totals for one mate's reads."""

    reads: int = 0
    bases: int = 0
    gc: int = 0
    q30: int = 0
    min_length: int = MAX_READ_LENGTH
    max_length: int = 0
    quality_sum: np.ndarray = field(default_factory=lambda: np.zeros(MAX_READ_LENGTH, dtype=np.int64))
    quality_count: np.ndarray = field(default_factory=lambda: np.zeros(MAX_READ_LENGTH, dtype=np.int64))

    def add(self, sequence: str, quality: str) -> None:
        length = len(sequence)
        phred = np.frombuffer(quality.encode("ascii"), dtype=np.uint8).astype(np.int64) - 33
        self.reads += 1
        self.bases += length
        self.gc += sequence.count("G") + sequence.count("C") + sequence.count("g") + sequence.count("c")
        self.q30 += int((phred >= 30).sum())
        self.min_length = min(self.min_length, length)
        self.max_length = max(self.max_length, length)
        self.quality_sum[:length] += phred
        self.quality_count[:length] += 1

    def to_dict(self) -> dict[str, Any]:
        used = self.quality_count[: self.max_length]
        per_position = self.quality_sum[: self.max_length] / np.maximum(used, 1)
        return {
            "reads": self.reads,
            "bases": self.bases,
            "mean_quality": round(float(self.quality_sum.sum() / max(self.bases, 1)), 3),
            "q30_fraction": round(self.q30 / max(self.bases, 1), 5),
            "gc_fraction": round(self.gc / max(self.bases, 1), 5),
            "read_length": {"min": self.min_length if self.reads else 0, "max": self.max_length,
                            "mean": round(self.bases / max(self.reads, 1), 2)},
            "mean_quality_by_position": [round(float(q), 2) for q in per_position],
        }


def mate_name(name: str) -> str:
    """Read name without a trailing /1 or /2, so R1 and R2 names compare equal."""
    return name[:-2] if name.endswith(("/1", "/2")) else name


def check_record(path: Path, number: int, record: Any) -> None:
    """One FASTQ record must have a quality exactly as long as its sequence, and only ACGTN bases."""
    sequence, quality = record.sequence or "", record.quality
    where = f"{path.name} record {number} ({record.name})"
    if quality is None:
        raise ToolError(f"malformed FASTQ: {where} has no quality line")
    if len(quality) != len(sequence):
        raise ToolError(
            f"malformed FASTQ: {where} has {len(sequence)} bases but {len(quality)} quality values (truncated file?)"
        )
    if not sequence:
        raise ToolError(f"malformed FASTQ: {where} has an empty sequence")
    if len(sequence) > MAX_READ_LENGTH:
        raise ToolError(f"{where} is {len(sequence)} bp; this QC handles short reads up to {MAX_READ_LENGTH} bp")
    if sequence.strip(VALID_BASES):
        raise ToolError(f"malformed FASTQ: {where} has letters other than ACGTN in its sequence")


def summarise_pair(r1: Path, r2: Path) -> tuple[MateSummary, MateSummary]:
    """Reads both files in lockstep, checking every record and that the mates pair up."""
    import pysam

    mates = (MateSummary(), MateSummary())
    number = 0
    try:
        with pysam.FastxFile(str(r1)) as first, pysam.FastxFile(str(r2)) as second:
            while True:
                one, two = next(first, None), next(second, None)
                if one is None or two is None:
                    if one is not None or two is not None:
                        longer, shorter = (r1, r2) if one is not None else (r2, r1)
                        raise ToolError(
                            f"R1 and R2 differ in length: {shorter.name} ends after {number} records, "
                            f"{longer.name} has more (truncated file?)"
                        )
                    break
                number += 1
                check_record(r1, number, one)
                check_record(r2, number, two)
                if mate_name(one.name or "") != mate_name(two.name or ""):
                    raise ToolError(
                        f"R1 and R2 out of step at record {number}: {one.name!r} in {r1.name} "
                        f"but {two.name!r} in {r2.name}"
                    )
                mates[0].add(one.sequence or "", one.quality or "")  # both checked non-empty above
                mates[1].add(two.sequence or "", two.quality or "")
    except ValueError as err:
        # FastxFile's message for a cut-off gzip stream or record; say which pair and how far it got.
        # pysam names the file by its full scratch path; the file name is what the user knows.
        detail = str(err).replace(str(r1), r1.name).replace(str(r2), r2.name)
        raise ToolError(f"malformed FASTQ in {r1.name}/{r2.name} after {number} good pairs: {detail}") from err
    except OSError as err:
        raise ToolError(f"cannot read {r1.name}/{r2.name} after {number} good pairs: {err}") from err
    if number == 0:
        raise ToolError(f"no FASTQ records in {r1.name} and {r2.name} (empty, or not FASTQ)")
    return mates


def check_gzip_complete(path: Path) -> None:
    """A gzip member must end with its trailer; a cut-off download can still parse into whole records."""
    import gzip
    import zlib

    if not path.name.endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ToolError(f"malformed FASTQ: {path.name} is not a complete gzip file ({err})") from err


def run_qc(r1: Path, r2: Path, out: Path) -> dict[str, Any]:
    """Checks the pair and writes `out/qc.json`; returns its content."""
    sample = check_read_pair(r1, r2)
    for path in (r1, r2):
        if not path.is_file():
            raise ToolError(f"read file not found: {path}")
        check_gzip_complete(path)
    first, second = summarise_pair(r1, r2)
    summary = {
        "sample": sample,
        "pairs": first.reads,
        "reads": first.reads + second.reads,
        "bases": first.bases + second.bases,
        "mean_quality": round((first.to_dict()["mean_quality"] * first.bases
                               + second.to_dict()["mean_quality"] * second.bases)
                              / max(first.bases + second.bases, 1), 3),
        "r1": first.to_dict(),
        "r2": second.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "qc.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools.qc", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="the item's files: <sample>_R1 and _R2 FASTQ")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    def body() -> None:
        summary = run_qc(*pick_reads(args.inputs), args.out)
        print(f"qc: {summary['sample']}: {summary['pairs']} pairs, mean base quality {summary['mean_quality']}")

    return run_tool("qc", body)


if __name__ == "__main__":
    sys.exit(main())
