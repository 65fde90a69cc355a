"""Truth scoring, sample names from read files, reference resolution errors and the SVG charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from examples.genomics import simulate
from examples.genomics.tools import common, evaluate, qc, svg


def test_scores_split_snps_and_indels_and_count_genotype_concordance() -> None:
    truth = {("c", 10, "A", "G"): "het", ("c", 20, "AT", "A"): "hom", ("c", 30, "C", "T"): "hom"}
    calls = {("c", 10, "A", "G"): "het", ("c", 20, "AT", "A"): "het", ("c", 40, "G", "C"): "het"}
    result = evaluate.score(calls, truth)
    assert result["snp"] == {"tp": 1, "fp": 1, "fn": 1, "called": 2, "truth": 2, "precision": 0.5, "recall": 0.5}
    assert result["indel"]["precision"] == result["indel"]["recall"] == 1.0
    assert result["genotype_concordance"] == 0.5
    assert evaluate.classify("AC", "GT") == "other"


def test_overall_pools_counts_not_ratios() -> None:
    results = {
        "a": {"snp": {"tp": 9, "called": 10, "truth": 9}, "indel": {"tp": 0, "called": 0, "truth": 1}},
        "b": {"snp": {"tp": 90, "called": 90, "truth": 100}, "indel": {"tp": 1, "called": 1, "truth": 1}},
    }
    pooled = evaluate.overall(results)
    assert pooled["snp"]["precision"] == pytest.approx(0.99)
    assert pooled["snp"]["recall"] == pytest.approx(99 / 109, abs=1e-5)
    assert pooled["indel"]["recall"] == 0.5


@pytest.mark.parametrize(("name", "sample"), [("S01_R1.fastq.gz", "S01"), ("a_b_R2.fq", "a_b"), ("x_1.fastq", "x")])
def test_sample_from_read_file_names(name: str, sample: str) -> None:
    assert common.sample_from_reads(f"/data/{name}") == sample


def test_read_pair_must_be_r1_then_r2_of_one_sample() -> None:
    with pytest.raises(common.ToolError, match="different samples"):
        common.check_read_pair("A_R1.fastq.gz", "B_R2.fastq.gz")
    with pytest.raises(common.ToolError, match="expected R1 then R2"):
        common.check_read_pair("A_R2.fastq.gz", "A_R1.fastq.gz")
    with pytest.raises(common.ToolError, match="cannot tell the sample"):
        common.check_read_pair("reads.fastq.gz", "A_R2.fastq.gz")


def test_remote_reference_is_refused_with_a_reason() -> None:
    with pytest.raises(common.ToolError, match="runner stages remote inputs"):
        common.resolve_reference("s3://bucket/ref.fa")


class Record:
    def __init__(self, name: str, sequence: str, quality: str | None) -> None:
        self.name, self.sequence, self.quality = name, sequence, quality


@pytest.mark.parametrize(("record", "reason"), [
    (Record("r", "ACGT", None), "has no quality line"),
    (Record("r", "ACGT", "II"), "has 4 bases but 2 quality values"),
    (Record("r", "ACXT", "IIII"), "letters other than ACGTN"),
    (Record("r", "", ""), "empty sequence"),
])
def test_qc_record_check_names_file_record_and_problem(record: Record, reason: str) -> None:
    from pathlib import Path

    with pytest.raises(common.ToolError, match=reason) as caught:
        qc.check_record(Path("S01_R2.fastq.gz"), 7, record)
    assert "S01_R2.fastq.gz record 7 (r)" in str(caught.value)


def test_mate_names_ignore_slash_suffixes() -> None:
    assert qc.mate_name("read/1") == qc.mate_name("read/2") == "read"


def test_charts_are_well_formed_svg() -> None:
    bars = svg.bar_chart("Reads <per> sample", ["S01", "S02"], {"a": [1.0, 3.0], "b": [2.0, 0.0]})
    lines = svg.line_chart("Quality", {"S01": [30.0, 31.0, 29.0]}, "cycle", y_max=45)
    for chart in (bars, lines):
        root = ET.fromstring(chart)
        assert root.tag.endswith("svg")
    assert "Reads &lt;per&gt; sample" in bars
    assert bars.count("<rect") == 4 + 2  # bars + legend swatches


def test_simulated_variants_are_spaced_sized_and_reproducible() -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    reference = simulate.random_reference(rng, 20_000)
    pool = simulate.variant_pool(rng, reference, 60)
    positions = [v.pos for v in pool]
    assert positions == sorted(positions)
    assert min(b - a for a, b in zip(positions, positions[1:])) >= simulate.MIN_SPACING - simulate.MIN_SPACING // 3
    for v in pool:
        assert reference[v.pos - 1 : v.pos - 1 + len(v.ref)] == v.ref
        assert v.ref != v.alt and abs(len(v.ref) - len(v.alt)) <= 5
    assert {len(v.ref) == len(v.alt) for v in pool} == {True, False}  # SNPs and indels
    rng_again = np.random.default_rng(3)
    assert simulate.variant_pool(rng_again, simulate.random_reference(rng_again, 20_000), 60) == pool


def test_haplotype_applies_only_its_own_variants() -> None:
    reference = "ACGTACGTACGT"
    snp = simulate.SampleVariant(simulate.Variant(2, "C", "T"), (0,))
    deletion = simulate.SampleVariant(simulate.Variant(5, "ACG", "A"), (0, 1))
    assert simulate.haplotype(reference, [snp, deletion], 0) == "ATGTATACGT"
    assert simulate.haplotype(reference, [snp, deletion], 1) == "ACGTATACGT"
    assert snp.genotype == (1, 0) and deletion.genotype == (1, 1)


def test_pick_reads_finds_the_pair_among_an_items_files() -> None:
    from pathlib import Path

    files = [Path("in/ref.fa"), Path("in/S01_R2.fastq.gz"), Path("in/S01.truth.vcf.gz"), Path("in/S01_R1.fastq.gz")]
    assert common.pick_reads(files) == (Path("in/S01_R1.fastq.gz"), Path("in/S01_R2.fastq.gz"))
    with pytest.raises(common.ToolError, match="expected one <sample>_R1 and one <sample>_R2"):
        common.pick_reads(files + [Path("in/S02_R1.fastq.gz")])


def test_pick_reference_needs_a_fasta_among_several_files() -> None:
    with pytest.raises(common.ToolError, match=r"no reference FASTA \(.fa/.fasta/.fna\) among the inputs: a.bam, b.txt"):
        common.pick_reference(["x/a.bam", "x/b.txt"])
