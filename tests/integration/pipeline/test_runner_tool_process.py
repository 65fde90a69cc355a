"""The runner's tool start (posix_spawn, no subprocess) with real processes, and what the runner imports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.runner import tool_process

PY = sys.executable


def run(argv: list[str], cwd: Path) -> int:
    return tool_process.wait(tool_process.start(argv, str(cwd)))


def test_exit_codes_and_signals_come_back_as_popen_reports_them(tmp_path: Path) -> None:
    assert run([PY, "-c", "raise SystemExit(0)"], tmp_path) == 0
    assert run([PY, "-c", "raise SystemExit(7)"], tmp_path) == 7
    assert run([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], tmp_path) == -signal.SIGKILL


def test_the_tool_runs_in_its_folder_with_default_sigpipe_and_no_inherited_descriptors(tmp_path: Path) -> None:
    probe = "import os; open('seen.txt', 'w').write(repr((os.getcwd(), sorted(map(int, os.listdir('/proc/self/fd'))))))"
    leaked = os.open(tmp_path / "leak", os.O_CREAT | os.O_WRONLY)
    os.set_inheritable(leaked, True)  # Popen (close_fds) would not pass it on either
    try:
        assert run([PY, "-c", probe], tmp_path) == 0
    finally:
        os.close(leaked)
    cwd, fds = eval((tmp_path / "seen.txt").read_text())
    assert cwd == str(tmp_path) and leaked not in fds and {0, 1, 2} <= set(fds)
    # Python ignores SIGPIPE (this test's process does); a tool must start with the default, as
    # under Popen, or `tool | head` pipelines inside it misbehave. A Python probe would reset it
    # itself, so a shell reads the mask the tool inherited.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    assert run(["sh", "-c", "grep SigIgn /proc/self/status > ignored.txt"], tmp_path) == 0
    ignored_mask = int((tmp_path / "ignored.txt").read_text().split()[1], 16)
    assert not ignored_mask & (1 << (signal.SIGPIPE - 1))


def test_exec_failures_are_the_childs_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tool_process.start(["conveyor-no-such-tool"], str(tmp_path))
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(PermissionError):
        tool_process.start([str(script)], str(tmp_path))
    with pytest.raises(FileNotFoundError):
        tool_process.start(["true"], str(tmp_path / "missing-folder"))  # chdir fails in the child


def test_the_runner_imports_nothing_heavy_on_a_jobs_start() -> None:
    """No spec model, schema, YAML, SDK, argparse or subprocess: the runner starts once per job."""
    heavy = ["dataclasses", "argparse", "subprocess", "tempfile", "uuid", "boto3", "botocore", "yaml", "jsonschema",
             "chalicelib.pipeline.model", "chalicelib.pipeline.spec", "chalicelib.objectstores.s3"]
    code = ("import sys, chalicelib.runner.main, chalicelib.objectstores.file\n"
            f"print(' '.join(name for name in {heavy!r} if name in sys.modules))")
    loaded = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
