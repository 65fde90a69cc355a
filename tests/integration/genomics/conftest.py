"""Fixtures: small simulated data sets and a helper that runs a stage tool as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.genomics.simulate import SimulationConfig, simulate

TOOLS_ROOT = Path(__file__).resolve().parents[3] / "examples" / "genomics"


def run_tool(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m tools.<module> ARGS` with the example folder on PYTHONPATH, as the engine runs it."""
    env = {**os.environ, "PYTHONPATH": str(TOOLS_ROOT)}
    return subprocess.run([sys.executable, "-m", f"tools.{module}", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two samples on a 30 kb reference at 30x (seconds to simulate and align)."""
    out = tmp_path_factory.mktemp("genomics-small")
    simulate(SimulationConfig(out=out, samples=2, genome_size=30_000, depth=30, seed=11), log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def malformed_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny sample whose R2 ends in a record with a cut-off quality line."""
    out = tmp_path_factory.mktemp("genomics-malformed")
    simulate(SimulationConfig(out=out, samples=1, genome_size=5_000, depth=5, seed=3, malformed=("S01",)),
             log=lambda _: None)
    return out
