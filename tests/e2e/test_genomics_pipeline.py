"""The genomics pipeline end to end: `conveyor run` on the embedded engine over simulated samples.

Runs the real CLI in its own process (spec -> planner -> submitter -> engine ->
runner -> tools -> tracker -> deferred join -> report), then checks the run's
published outputs against the simulated truth. A second run breaks one
sample's FASTQ: its chain fails in qc with the reason, the others finish,
the report names it and the run's exit status is non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysam
import pytest

from examples.genomics.simulate import ITEMS_MANIFEST, SimulationConfig, simulate

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[2] / "examples" / "genomics" / "pipeline.yaml"
SAMPLES = ("S01", "S02", "S03")


@dataclass(frozen=True)
class Run:
    """A finished `conveyor run`: exit status, console output and the run's output folder."""

    code: int
    output: str
    outputs: Path

    def report(self) -> dict[str, Any]:
        return json.loads((self.outputs / "report" / "report.json").read_text())


def run_pipeline(tmp: Path, malformed: tuple[str, ...] = ()) -> Run:
    data = tmp / "data"
    simulate(SimulationConfig(out=data, samples=len(SAMPLES), genome_size=50_000, depth=30, seed=21,
                              malformed=malformed), log=lambda _: None)
    run_id = "genomics-e2e-malformed" if malformed else "genomics-e2e"
    command = [sys.executable, "-m", "chalicelib.cli", "run", str(SPEC), "--items", str(data / ITEMS_MANIFEST),
               "--data-dir", str(tmp / "conveyor-data"), "--run-id", run_id, "--no-progress"]
    # A wide terminal keeps rich from wrapping the failure lines the tests look for.
    result = subprocess.run(command, capture_output=True, text=True, timeout=540, env={**os.environ, "COLUMNS": "200"})
    return Run(result.returncode, result.stdout + result.stderr, tmp / "conveyor-data" / "runs" / run_id)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_pipeline(tmp_path_factory.mktemp("genomics-clean"))


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_pipeline(tmp_path_factory.mktemp("genomics-broken"), malformed=("S02",))


def test_clean_run_succeeds_and_publishes_every_stage(clean_run: Run) -> None:
    assert clean_run.code == 0, clean_run.output
    for stage in ("qc", "align", "call"):
        for sample in SAMPLES:
            assert (clean_run.outputs / stage / sample / "_SUCCESS").is_file(), (stage, sample)
    assert (clean_run.outputs / "align" / "S01" / "S01.bam.bai").is_file()
    with pysam.VariantFile(str(clean_run.outputs / "joint" / "joint.vcf.gz")) as joint:
        assert list(joint.header.samples) == list(SAMPLES)
    assert (clean_run.outputs / "report" / "report.html").is_file()


def test_clean_run_meets_the_accuracy_thresholds_against_the_truth(clean_run: Run) -> None:
    assert clean_run.code == 0, clean_run.output
    report = clean_run.report()
    assert report["samples"] == list(SAMPLES) and report["failed"] == {}
    for sample in SAMPLES:
        score = report["per_sample"][sample]["score"]
        assert score["snp"]["truth"] >= 30 and score["indel"]["truth"] >= 5, score
        assert score["snp"]["precision"] >= 0.98 and score["snp"]["recall"] >= 0.98, (sample, score["snp"])
        assert score["indel"]["precision"] >= 0.95 and score["indel"]["recall"] >= 0.95, (sample, score["indel"])
        assert report["per_sample"][sample]["mapping_rate"] > 0.98


def test_malformed_sample_fails_its_chain_with_the_reason_and_the_run_fails(broken_run: Run) -> None:
    assert broken_run.code != 0
    assert "stage qc, item 'S02'" in broken_run.output
    assert "malformed FASTQ" in broken_run.output and "S02_R2.fastq.gz" in broken_run.output
    assert not (broken_run.outputs / "qc" / "S02" / "_SUCCESS").exists()
    assert not (broken_run.outputs / "align" / "S02").exists()
    for sample in ("S01", "S03"):
        assert (broken_run.outputs / "call" / sample / "_SUCCESS").is_file()


def test_join_and_report_run_on_the_rest_and_name_the_failed_sample(broken_run: Run) -> None:
    with pysam.VariantFile(str(broken_run.outputs / "joint" / "joint.vcf.gz")) as joint:
        assert list(joint.header.samples) == ["S01", "S03"]
    report = broken_run.report()
    assert report["samples"] == ["S01", "S03"]
    assert list(report["failed"]) == ["S02"]
    html = (broken_run.outputs / "report" / "report.html").read_text()
    assert "1 of the run's samples failed" in html and ">S02<" in html
    for sample in ("S01", "S03"):
        score = report["per_sample"][sample]["score"]
        assert score["snp"]["recall"] >= 0.98 and score["indel"]["recall"] >= 0.95
