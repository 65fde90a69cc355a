"""kill_orphans after a simulated kill -9: process trees left by a dead engine are found and ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from chalicelib.localbatch.execution import procfs
from chalicelib.localbatch.execution.executor import ProcessExecutor

# Runs in a throwaway process (the "old engine"): starts a tagged tree in its own
# session (python parent + `sleep 60` child), prints both pids, exits without waiting.
LAUNCHER = r"""
import os, subprocess, sys
token, key = sys.argv[1], sys.argv[2]
tree = "import subprocess, sys, time; c = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL); print(c.pid, flush=True); time.sleep(60)"
env = dict(os.environ, CONVEYOR_ENGINE_TOKEN=token, CONVEYOR_ATTEMPT_KEY=key)
parent = subprocess.Popen([sys.executable, "-c", tree], env=env, stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
child = parent.stdout.readline().decode().strip()
print(parent.pid, child, flush=True)
os._exit(0)
"""


def start_orphan_tree(token: str, key: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", LAUNCHER, token, key], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split()
    return int(out[0]), int(out[1])


def wait_until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def token() -> str:
    return f"orphan-test-{os.getpid()}-{time.monotonic_ns()}"


@pytest.fixture
def survivors() -> Iterator[list[int]]:
    """Pids a test expects to survive; killed (by group) at the end either way."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_kill_orphans_ends_the_tagged_trees_and_only_those(token: str, survivors: list[int]) -> None:
    parent, child = start_orphan_tree(token, "job-a#1")
    other_parent, other_child = start_orphan_tree(f"{token}-other-engine", "job-z#1")
    survivors.extend([parent, other_parent])
    assert all(procfs.is_alive(pid) for pid in (parent, child, other_parent, other_child))
    # The launcher exited: the tree now belongs to init, like after a kill -9 of the engine.
    assert procfs.read_stat(parent) is not None and procfs.read_stat(parent).ppid != os.getpid()  # type: ignore[union-attr]

    executor = ProcessExecutor(token)
    try:
        killed = executor.kill_orphans()
    finally:
        executor.close()

    assert killed == ["job-a#1"]
    # kill_orphans waits until they are gone, so no polling is needed here.
    assert not procfs.is_alive(parent)
    assert not procfs.is_alive(child)
    assert procfs.is_alive(other_parent) and procfs.is_alive(other_child)


def test_kill_orphans_returns_each_attempt_key_once(token: str, survivors: list[int]) -> None:
    trees = [start_orphan_tree(token, "job-b#2"), start_orphan_tree(token, "job-c#1")]
    survivors.extend(parent for parent, _ in trees)
    executor = ProcessExecutor(token)
    try:
        assert executor.kill_orphans() == ["job-b#2", "job-c#1"]
        assert executor.kill_orphans() == []
    finally:
        executor.close()
    for parent, child in trees:
        assert not procfs.is_alive(parent) and not procfs.is_alive(child)


def test_kill_orphans_spares_the_executors_own_running_attempts(token: str, tmp_path: object) -> None:
    from chalicelib.localbatch.execution.executor import LaunchRequest

    executor = ProcessExecutor(token)
    exits: list[object] = []
    executor.set_exit_callback(exits.append)
    try:
        tree = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
        pid = executor.launch(LaunchRequest("own#1", (sys.executable, "-c", tree), {}, f"{tmp_path}/w",
                                            f"{tmp_path}/l.log"))
        wait_until(lambda: any(s.pgid == pid and s.pid != pid for s in procfs.scan_stats()), "no child started")
        assert executor.kill_orphans() == []
        assert procfs.is_alive(pid)
    finally:
        executor.close()
    wait_until(lambda: len(exits) == 1, "close() did not report the killed attempt")
