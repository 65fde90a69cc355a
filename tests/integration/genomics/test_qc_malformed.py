"""QC rejects malformed FASTQ pairs with one clear line and exit status 1."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from .conftest import run_tool


def reads(dataset: Path) -> tuple[Path, Path]:
    return dataset / "reads" / "S01_R1.fastq.gz", dataset / "reads" / "S01_R2.fastq.gz"


def write_fastq(path: Path, records: list[tuple[str, str, str]]) -> Path:
    with gzip.open(path, "wt") as out:
        for name, seq, qual in records:
            out.write(f"@{name}\n{seq}\n+\n{qual}\n")
    return path


def assert_rejected(result, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qc: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_good_pair_passes_with_counts_and_quality_summary(small_dataset: Path, tmp_path: Path) -> None:
    # Other item files (the reference, the truth) may come along; QC uses the two FASTQs.
    extra = small_dataset / "reference" / "ref.fa"
    result = run_tool("qc", extra, *reads(small_dataset), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "qc.json").read_text())
    assert summary["sample"] == "S01" and 2550 <= summary["pairs"] <= 3450
    assert summary["reads"] == 2 * summary["pairs"] and summary["bases"] == 300 * summary["pairs"]
    assert 25 < summary["mean_quality"] < 40
    assert len(summary["r1"]["mean_quality_by_position"]) == 150
    assert summary["r1"]["mean_quality_by_position"][0] > summary["r1"]["mean_quality_by_position"][-1]


def test_truncated_quality_line_is_rejected(malformed_dataset: Path, tmp_path: Path) -> None:
    result = run_tool("qc", *reads(malformed_dataset), tmp_path / "out")
    assert_rejected(result, "malformed FASTQ", "S01_R2.fastq.gz")
    assert not (tmp_path / "out" / "qc.json").exists()


def test_cut_off_gzip_is_rejected(small_dataset: Path, tmp_path: Path) -> None:
    r1, r2 = reads(small_dataset)
    cut = tmp_path / "S01_R2.fastq.gz"
    cut.write_bytes(r2.read_bytes()[: r2.stat().st_size // 2])
    assert_rejected(run_tool("qc", r1, cut, tmp_path / "out"), "S01_R2.fastq.gz is not a complete gzip file")


def test_pair_with_different_record_counts_is_rejected(tmp_path: Path) -> None:
    r1 = write_fastq(tmp_path / "X_R1.fastq.gz", [("a", "ACGT", "IIII"), ("b", "ACGT", "IIII")])
    r2 = write_fastq(tmp_path / "X_R2.fastq.gz", [("a", "ACGT", "IIII")])
    assert_rejected(run_tool("qc", r1, r2, tmp_path / "out"), "R1 and R2 differ in length",
                    "X_R2.fastq.gz ends after 1 records")


def test_pair_with_mismatched_names_is_rejected(tmp_path: Path) -> None:
    r1 = write_fastq(tmp_path / "X_R1.fastq.gz", [("a/1", "ACGT", "IIII"), ("b/1", "ACGT", "IIII")])
    r2 = write_fastq(tmp_path / "X_R2.fastq.gz", [("a/2", "ACGT", "IIII"), ("c/2", "ACGT", "IIII")])
    assert_rejected(run_tool("qc", r1, r2, tmp_path / "out"), "out of step at record 2", "'b/1'", "'c/2'")


def test_record_with_short_quality_is_rejected(tmp_path: Path) -> None:
    r1 = write_fastq(tmp_path / "X_R1.fastq.gz", [("a", "ACGTACGT", "IIII")])
    r2 = write_fastq(tmp_path / "X_R2.fastq.gz", [("a", "ACGTACGT", "IIIIIIII")])
    result = run_tool("qc", r1, r2, tmp_path / "out")
    assert result.returncode == 1
    assert "X_R1.fastq.gz" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"", b"not a fastq at all\n"])
def test_empty_or_garbage_files_are_rejected(tmp_path: Path, content: bytes) -> None:
    r1 = tmp_path / "X_R1.fastq.gz"
    r2 = tmp_path / "X_R2.fastq.gz"
    for path in (r1, r2):
        with gzip.open(path, "wb") as out:
            out.write(content)
    result = run_tool("qc", r1, r2, tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("qc: ") and "Traceback" not in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_tool("qc", tmp_path / "Y_R1.fastq.gz", tmp_path / "Y_R2.fastq.gz", tmp_path / "out")
    assert_rejected(result, "read file not found", "Y_R1.fastq.gz")


def test_item_without_a_read_pair_is_a_clear_error(small_dataset: Path, tmp_path: Path) -> None:
    r1, _ = reads(small_dataset)
    result = run_tool("qc", r1, small_dataset / "reference" / "ref.fa", tmp_path / "out")
    assert_rejected(result, "expected one <sample>_R1 and one <sample>_R2 FASTQ", "S01_R1.fastq.gz, ref.fa")
