"""Ctrl-C typed into a real terminal at random moments of `conveyor run` leaves no job unfinished and no run open.

Each try starts `conveyor run` (engine in-process) under a pseudo-terminal, writes ^C to it
after a random delay (while the engine starts, while jobs are submitted, while they run),
and after the command exits reads the folder's engine and run state straight from SQLite.
All tries share one data folder, as a user's repeated runs do: a job left behind by one
try would show up in the next.
"""

from __future__ import annotations

import os
import pty
import random
import select
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.pipeline_harness import STAGE, make_items

SPEC = f"""name: sleepy
stages:
  - name: wait
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --slow-key, "{{key}}", --sleep, "30", --out, "{{out}}", "{{item}}"]
    foreach: item
  - name: join
{STAGE}    command: [python, -m, tool, gather, --out, "{{out}}", "{{wait}}"]
    after: [wait]
"""
TRIES = 16
TRY_BUDGET_SECONDS = 60.0  # the whole test stops trying after this, however many tries it made
EXIT_TIMEOUT = 60.0


def _run_and_interrupt(args: list[str], delay: float) -> tuple[int, str]:
    """Runs ``args`` on a new pty, types ^C after ``delay`` s; returns (exit code, output)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty, as in a shell
        try:
            os.execv(sys.executable, [sys.executable, *args])
        finally:
            os._exit(127)
    output = bytearray()
    sent = False
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if not sent and elapsed >= delay:
            os.write(master, b"\x03")  # the terminal's line discipline sends SIGINT to the foreground group
            sent = True
        if elapsed > delay + EXIT_TIMEOUT:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"conveyor run did not exit after ^C: {output.decode(errors='replace')}")
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def _unfinished_jobs(data: Path) -> list[tuple[str, str]]:
    path = data / "state.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT job_id, status FROM jobs WHERE status NOT IN ('SUCCEEDED', 'FAILED')"))


def _open_runs(data: Path) -> list[tuple[str, str]]:
    path = data / "runs.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        key = "run_id" if "run_id" in columns else "id"
        return list(db.execute(f"SELECT {key}, status FROM runs WHERE status NOT IN ('SUCCEEDED', 'FAILED')"))


@pytest.mark.skipif(not hasattr(os, "waitstatus_to_exitcode"), reason="needs Python 3.9+")
def test_ctrl_c_at_random_moments_leaves_no_job_unfinished_and_no_run_open(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt", "s3.txt"])
    spec = tmp_path / "sleepy.yaml"
    spec.write_text(SPEC)
    data = tmp_path / "data"
    rng = random.Random(os.environ.get("CONVEYOR_TEST_SEED", "ctrl-c"))
    deadline = time.monotonic() + TRY_BUDGET_SECONDS
    tries: list[tuple[float, int]] = []
    for n in range(TRIES):
        if tries and time.monotonic() > deadline:
            break
        delay = rng.uniform(0.0, 2.5)
        code, output = _run_and_interrupt(
            ["-m", "chalicelib.cli", "run", str(spec), "--items", str(items), "--data-dir", str(data),
             "--run-id", f"try{n}", "--no-progress"], delay)
        tries.append((delay, code))
        if "Traceback" in output or code == -signal.SIGINT:
            # ^C while the interpreter itself starts (site, the editable-install finder) is
            # Python's to report; no line of ours may be in it.
            assert "/chalicelib/" not in output, f"try {n} (^C after {delay:.2f}s):\n{output}"
        else:
            assert code in (130, 1), f"try {n} (^C after {delay:.2f}s) exited {code}:\n{output}"
        assert _unfinished_jobs(data) == [], f"try {n} (^C after {delay:.2f}s) left jobs:\n{output}"
        assert _open_runs(data) == [], f"try {n} (^C after {delay:.2f}s) left a run open:\n{output}"
    assert len(tries) >= 8, tries
    # The last try ran long enough to have jobs: the tries did exercise a running run.
    assert any(delay > 1.5 for delay, _ in tries), tries
