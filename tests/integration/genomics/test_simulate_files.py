"""The simulator writes a complete, seeded, reproducible data set."""

from __future__ import annotations

import gzip
from pathlib import Path

import pysam
import pytest

from examples.genomics.simulate import SimulationConfig, main, simulate


def build(out: Path, seed: int) -> Path:
    simulate(SimulationConfig(out=out, samples=2, genome_size=6_000, depth=8, seed=seed), log=lambda _: None)
    return out


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second = contents(build(tmp_path / "a", 5)), contents(build(tmp_path / "b", 5))
    assert first == second
    other = contents(build(tmp_path / "c", 6))
    assert other["reads/S01_R1.fastq.gz"] != first["reads/S01_R1.fastq.gz"]
    assert set(first) >= {"reference/ref.fa", "reference/ref.fa.fai", "reads/S02_R2.fastq.gz",
                          "truth/S01.truth.vcf.gz", "truth/S01.truth.vcf.gz.tbi", "samples.txt"}


def test_reads_pairs_and_truth_are_consistent(small_dataset: Path) -> None:
    with pysam.FastxFile(str(small_dataset / "reads" / "S01_R1.fastq.gz")) as r1, \
            pysam.FastxFile(str(small_dataset / "reads" / "S01_R2.fastq.gz")) as r2:
        pairs = list(zip(r1, r2))
    assert 0.85 * 3000 <= len(pairs) <= 1.15 * 3000  # 30x of 30 kb in 300 bp pairs, +-15% per sample
    assert all(a.name == b.name and len(a.sequence or "") == len(a.quality or "") == 150 for a, b in pairs)
    with pysam.VariantFile(str(small_dataset / "truth" / "S01.truth.vcf.gz")) as truth:
        assert list(truth.header.samples) == ["S01"]
        genotypes = {tuple(sorted(r.samples["S01"]["GT"])) for r in truth}
    assert genotypes == {(0, 1), (1, 1)}  # both het and hom variants


def test_malformed_option_cuts_the_last_quality_line(malformed_dataset: Path) -> None:
    with gzip.open(malformed_dataset / "reads" / "S01_R2.fastq.gz", "rt") as handle:
        last = handle.read().splitlines()[-4:]
    assert len(last[3]) == len(last[1]) // 2


def test_unknown_malformed_sample_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--samples", "2", "--genome-size", "5000", "--malformed", "S09"]) == 2
    assert "--malformed names unknown sample(s) ['S09']" in capsys.readouterr().err
