"""A repaired sample, re-run: the genomics run completes with all 8 samples in the joint VCF.

`conveyor run` over 8 simulated samples with S03's FASTQ truncated fails S03's chain; the
sample is repaired (simulated again, intact) and `conveyor rerun` re-runs S03 alone through
qc, align and call, reuses the other seven samples' outputs by reference, and runs the joint
call and the report over all eight.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pysam
import pytest

from examples.genomics.simulate import ITEMS_MANIFEST, SimulationConfig, simulate

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[2] / "examples" / "genomics" / "pipeline.yaml"
SAMPLES = tuple(f"S{n:02d}" for n in range(1, 9))


def _conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args, "--no-progress"], capture_output=True,
                          text=True, timeout=540, env={**os.environ, "COLUMNS": "200"})


def test_rerun_of_a_repaired_sample_completes_the_run_with_all_samples(tmp_path: Path) -> None:
    data, state = tmp_path / "data", tmp_path / "conveyor-data"
    config = SimulationConfig(out=data, samples=len(SAMPLES), genome_size=30_000, depth=20, seed=5,
                              malformed=("S03",))
    simulate(config, log=lambda _: None)
    first = _conveyor("run", str(SPEC), "--items", str(data / ITEMS_MANIFEST), "--data-dir", str(state),
                      "--run-id", "broken")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "stage qc, item 'S03'" in first.stdout
    with pysam.VariantFile(str(state / "runs" / "broken" / "joint" / "joint.vcf.gz")) as joint:
        assert "S03" not in list(joint.header.samples)

    simulate(SimulationConfig(**{**config.__dict__, "malformed": ()}), log=lambda _: None)  # the repair
    second = _conveyor("rerun", "broken", "--data-dir", str(state))
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert "stage qc: 1 item(s) run again (S03), 7 reused" in output
    assert "stage call: 1 item(s) run again (S03), 7 reused" in output
    rerun_id = output.split("rerun of broken as ", 1)[1].split(":", 1)[0]
    outputs = state / "runs" / rerun_id
    with pysam.VariantFile(str(outputs / "joint" / "joint.vcf.gz")) as joint:
        assert list(joint.header.samples) == list(SAMPLES)
    assert (outputs / "align" / "S01" / "_REF").is_file() and not (outputs / "align" / "S01" / "S01.bam").exists()
    assert (outputs / "align" / "S03" / "S03.bam").is_file()
