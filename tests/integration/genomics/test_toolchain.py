"""qc -> align -> call -> joint -> report as separate processes on simulated data, scored against the truth."""

from __future__ import annotations

import json
from pathlib import Path

import pysam
import pytest

from .conftest import run_tool

SAMPLES = ("S01", "S02")


@pytest.fixture(scope="module")
def chain(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs every stage tool the way the pipeline does (one process per sample and stage)."""
    out = tmp_path_factory.mktemp("chain")
    items = {line.split("\t")[0]: [small_dataset / f for f in line.split("\t")[1:]]
             for line in (small_dataset / "items.tsv").read_text().splitlines() if not line.startswith("#")}
    for sample in SAMPLES:
        # The commands pipeline.yaml gives, with {item} = the item's files from the manifest.
        steps: list[tuple[str | Path, ...]] = [
            ("qc", *items[sample], out / "qc" / sample),
            ("align", *items[sample], out / "align" / sample, "--qc", out / "qc" / sample),
            ("call", out / "align" / sample, out / "call" / sample, "--reference", *items[sample]),
        ]
        for module, *args in steps:
            result = run_tool(str(module), *args)
            assert result.returncode == 0, f"{module} {sample}: {result.stderr}"
    result = run_tool("joint", out / "joint", *(out / "call" / s for s in SAMPLES))
    assert result.returncode == 0, result.stderr
    # S03 is in the run but never reached the join; S04 failed with a known reason.
    inputs = [f for s in SAMPLES for f in items[s]] + [small_dataset / "reads" / "S03_R1.fastq.gz"]
    (out / "failures.json").write_text(json.dumps({"S04": "qc: malformed FASTQ: S04_R2.fastq.gz record 9"}))
    result = run_tool("report", "--joint", out / "joint", "--out", out / "report", "--failures",
                      out / "failures.json", "--inputs", *inputs)
    assert result.returncode == 0, result.stderr
    return out


def test_bam_is_sorted_indexed_paired_and_read_grouped(chain: Path) -> None:
    bam_path = chain / "align" / "S01" / "S01.bam"
    assert (chain / "align" / "S01" / "S01.bam.bai").is_file()
    with pysam.AlignmentFile(str(bam_path)) as bam:
        header = bam.header.to_dict()
        assert header["HD"]["SO"] == "coordinate"
        assert header["RG"] == [{"ID": "S01", "SM": "S01", "LB": "S01", "PL": "ILLUMINA"}]
        records = list(bam.fetch("chr1", 5_000, 6_000))
    assert records and all(r.is_paired and r.get_tag("RG") == "S01" for r in records)
    proper = [r for r in records if r.is_proper_pair]
    assert len(proper) / len(records) > 0.95
    assert all(r.template_length != 0 and r.next_reference_start >= 0 for r in proper)
    stats = json.loads((chain / "align" / "S01" / "align.json").read_text())
    qc = json.loads((chain / "qc" / "S01" / "qc.json").read_text())
    assert stats["mapping_rate"] > 0.98 and stats["reads"] == qc["reads"]


def test_joint_vcf_names_both_samples_and_carries_their_figures(chain: Path) -> None:
    with pysam.VariantFile(str(chain / "joint" / "joint.vcf.gz")) as joint:
        assert list(joint.header.samples) == list(SAMPLES)
        assert sum(1 for _ in joint) > 0
    samples = json.loads((chain / "joint" / "samples.json").read_text())
    assert set(samples) == set(SAMPLES)
    assert set(samples["S02"]) == {"qc", "align", "call"}


def test_accuracy_against_the_truth_meets_the_thresholds(chain: Path) -> None:
    report = json.loads((chain / "report" / "report.json").read_text())
    for sample in SAMPLES:
        score = report["per_sample"][sample]["score"]
        assert score["snp"]["truth"] > 10 and score["indel"]["truth"] > 0
        assert score["snp"]["precision"] >= 0.98 and score["snp"]["recall"] >= 0.98, score["snp"]
        assert score["indel"]["precision"] >= 0.95 and score["indel"]["recall"] >= 0.95, score["indel"]
    overall = report["overall"]
    assert overall["snp"]["recall"] >= 0.98 and overall["indel"]["recall"] >= 0.95


def test_report_lists_failed_samples_with_reasons_and_has_plots(chain: Path) -> None:
    report = json.loads((chain / "report" / "report.json").read_text())
    assert report["samples"] == list(SAMPLES)
    assert report["failed"] == {"S03": None, "S04": "qc: malformed FASTQ: S04_R2.fastq.gz record 9"}
    html = (chain / "report" / "report.html").read_text()
    assert "S04_R2.fastq.gz record 9" in html and ">S03<" in html
    assert html.count("<svg") >= 4
    assert "2 of 4 samples in the joint VCF" in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained


def test_empty_call_set_is_a_failure(chain: Path, tmp_path: Path, small_dataset: Path) -> None:
    # An empty BAM (what an aligner that silently mapped nothing leaves) must not pass as "no variants".
    empty = tmp_path / "align"
    empty.mkdir()
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": 30_000}],
              "RG": [{"ID": "Z", "SM": "Z"}]}
    with pysam.AlignmentFile(str(empty / "Z.bam"), "wb", header=header):
        pass
    pysam.index(str(empty / "Z.bam"))
    (empty / "align.json").write_text(json.dumps({"sample": "Z"}))
    result = run_tool("call", empty, tmp_path / "out", "--reference", small_dataset / "reference")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("call: no variants called for Z")


def test_joint_with_no_inputs_fails_clearly(tmp_path: Path) -> None:
    result = run_tool("joint", tmp_path / "out")
    assert result.returncode == 1 and "every sample failed upstream" in result.stderr
