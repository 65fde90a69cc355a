"""`conveyor run` starts its runner jobs from a warm launcher, with the same outcome as cold ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.cli import main
from tests.e2e.pipeline_harness import make_items

# The tool records the command line of its parent, the runner: a runner forked from a
# warm launcher still carries the launcher's command line (it never exec'd).
SPEC = """name: warm
stages:
  - name: a
    foreach: item
    compute: on-demand
    resources: {vcpus: 1, memory: 64}
    command: [python, -c, "import os, sys; open(os.path.join(sys.argv[1], 'runner.txt'), 'w').write(open('/proc/%d/cmdline' % os.getppid(), 'rb').read().replace(bytes(1), bytes(b' ')).decode() + '|' + sys.argv[2])", "{out}", "{key}"]
"""


def test_runner_jobs_go_warm_once_the_launcher_is_ready(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"s{index:02d}.txt" for index in range(12)]
    items = make_items(tmp_path / "items", names)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    data = tmp_path / "data"
    code = main(["run", str(spec), "--items", str(items), "--data-dir", str(data), "--run-id", "w1", "--no-progress"])
    assert code == 0, capsys.readouterr().out
    runners = {path.parent.name: path.read_text() for path in (data / "runs" / "w1" / "a").glob("*/runner.txt")}
    assert sorted(runners) == [name.removesuffix(".txt") for name in names]
    assert all(text.endswith("|" + key) for key, text in runners.items())
    warm = [key for key, text in runners.items() if "warm_launcher.py chalicelib.runner" in text]
    cold = [key for key, text in runners.items() if "-m chalicelib.runner" in text]
    assert len(warm) + len(cold) == len(names)
    # The first attempts start cold while the launcher imports the runner; later ones are warm.
    assert warm, runners
