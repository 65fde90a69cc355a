"""SpawnerExecutor specifics: build cache, factory fallback, same env as ProcessExecutor, concurrency,
spawner loss and kill -9 of the engine. The shared behaviours run in test_executor_process.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.localbatch.execution import procfs, spawner_build
from chalicelib.localbatch.execution.executor import (
    ExitInfo,
    LaunchRequest,
    ProcessExecutor,
)
from chalicelib.localbatch.execution.factory import make_executor
from chalicelib.localbatch.execution.spawner_executor import (
    SPAWNER_LOST,
    SpawnerExecutor,
    SpawnerUnavailable,
)

PY = sys.executable
WAIT = 30.0

pytestmark = pytest.mark.skipif(spawner_build.spawner_path() is None,
                                reason=f"conveyor-spawner cannot be built: {spawner_build.last_error()}")


def token() -> str:
    return f"spawner-test-{os.getpid()}-{time.monotonic_ns()}"


def request(root: Path, key: str, *argv: str, **options: object) -> LaunchRequest:
    safe = key.replace(":", "_").replace("#", "_")
    values: dict[str, object] = {"attempt_key": key, "argv": argv, "env": {}, "workdir": str(root / "w" / safe),
                                 "log_path": str(root / "l" / f"{safe}.log")}
    values.update(options)
    return LaunchRequest(**values)  # type: ignore[arg-type]


def wait_until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


Spawned = tuple[SpawnerExecutor, "queue.SimpleQueue[ExitInfo]"]


@pytest.fixture
def spawner() -> Iterator[Spawned]:
    executor = SpawnerExecutor(token(), memory_poll_seconds=0.05)
    exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
    executor.set_exit_callback(exits.put)
    yield executor, exits
    executor.close()


def test_the_binary_is_built_once_per_source_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = spawner_build.spawner_path()
    assert path is not None
    assert Path(path).parent == tmp_path / "cache" / "conveyor"
    assert Path(path).name == spawner_build.binary_name(spawner_build.SOURCE.read_bytes())
    assert spawner_build.spawner_path() == path
    assert [entry.name for entry in (tmp_path / "cache" / "conveyor").iterdir()] == [Path(path).name]


def test_a_cache_folder_others_can_write_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "cache" / "conveyor"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    path = spawner_build.spawner_path()
    assert "writable by others" in spawner_build.last_error()
    assert path is not None and Path(path).parent == tmp_path / "tmp" / f"conveyor-{os.getuid()}"


def test_without_a_compiler_auto_falls_back_and_spawner_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert spawner_build.spawner_path() is None
    assert "no C compiler" in spawner_build.last_error()
    with pytest.raises(SpawnerUnavailable, match="no C compiler"):
        SpawnerExecutor("tok")
    fallback = make_executor("tok", "auto")
    try:
        assert isinstance(fallback, ProcessExecutor)
    finally:
        fallback.close()
    with pytest.raises(ValueError, match="'spawner' requested but it cannot start"):
        make_executor("tok", "spawner")


def test_auto_and_spawner_kinds_give_the_spawner() -> None:
    for kind in ("auto", "spawner"):
        executor = make_executor("tok", kind)
        try:
            assert isinstance(executor, SpawnerExecutor)
        finally:
            executor.close()


def test_child_environment_is_identical_to_process_executor(tmp_path: Path) -> None:
    tag = token()
    image = tmp_path / "image"
    image.mkdir()
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    envs = []
    for executor in (ProcessExecutor(tag), SpawnerExecutor(tag)):
        exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
        executor.set_exit_callback(exits.put)
        root = tmp_path / type(executor).__name__
        try:
            executor.launch(request(root, "env#1", "python", "-c", dump, image=f"file://{image}", gpu_ids=(1, 3),
                                    env={"AWS_BATCH_JOB_ID": "env", "PYTHONPATH": "/x", "HOME": "/job-home"}))
            assert exits.get(timeout=WAIT).exit_code == 0
        finally:
            executor.close()
        envs.append(json.loads((root / "l" / "env_1.log").read_text()))
    assert envs[0] == envs[1]
    assert envs[1]["PYTHONPATH"] == f"{image}{os.pathsep}/x"
    assert envs[1]["CUDA_VISIBLE_DEVICES"] == "1,3" and envs[1]["HOME"] == "/job-home"


def test_bare_name_is_searched_on_the_childs_path_relative_to_its_workdir(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    workdir = tmp_path / "scratch"
    (workdir / "relbin").mkdir(parents=True)
    tool = workdir / "relbin" / "rel-tool"
    tool.write_text("#!/bin/sh\necho relative ok\n")
    tool.chmod(0o755)
    # A relative PATH folder is not resolved by Python's cache: the spawner's child searches it.
    pid = executor.launch(request(tmp_path, "rel#1", "rel-tool", workdir=str(workdir),
                                  env={"PATH": f"relbin{os.pathsep}/usr/bin{os.pathsep}/bin"}))
    assert pid > 0
    assert exits.get(timeout=WAIT).exit_code == 0
    assert (tmp_path / "l" / "rel_1.log").read_text() == "relative ok\n"


@pytest.mark.parametrize(("env", "detail"), [({"BAD=NAME": "x"}, "illegal environment variable name"),
                                             ({"NUL": "a\0b"}, "embedded null byte")])
def test_environment_execve_cannot_carry_is_cannot_start(spawner: Spawned, tmp_path: Path, env: dict[str, str],
                                                          detail: str) -> None:
    executor, exits = spawner
    assert executor.launch(request(tmp_path, "badenv#1", "true", env=env)) == -1
    info = exits.get(timeout=WAIT)
    assert (info.started, info.exit_code) == (False, None)
    assert info.reason is not None and info.reason.startswith("CannotStartContainerError: ") and detail in info.reason


def test_2000_true_with_2_in_flight_from_2_launcher_threads_all_exit_0(spawner: Spawned, tmp_path: Path) -> None:
    # The engine's shape: exits wake launcher threads that start the next attempt. A reaper
    # that signals a recycled pid's group would turn some of these into 137s.
    executor, exits = spawner
    total, slots = 2000, 2
    work: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    pids: list[int] = []

    def launcher() -> None:
        while (index := work.get()) is not None:
            pids.append(executor.launch(request(tmp_path, f"t:{index}#1", "true", log_path=str(tmp_path / "t.log"))))

    threads = [threading.Thread(target=launcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for index in range(slots):
        work.put(index)
    codes: dict[str, int | None] = {}
    for launched in range(slots, total + slots):
        info = exits.get(timeout=WAIT)
        codes[info.attempt_key] = info.exit_code
        work.put(launched if launched < total else None)
    for thread in threads:
        thread.join(WAIT)
    assert len(codes) == total and set(codes.values()) == {0}
    assert min(pids) > 0
    assert exits.empty() and executor.running() == []


def test_launch_from_the_exit_callback_does_not_deadlock(tmp_path: Path) -> None:
    executor = SpawnerExecutor(token())
    exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
    chained: list[int] = []

    def on_exit(info: ExitInfo) -> None:
        exits.put(info)
        if info.attempt_key == "first#1":
            chained.append(executor.launch(request(tmp_path, "second#1", "true")))

    executor.set_exit_callback(on_exit)
    try:
        executor.launch(request(tmp_path, "first#1", "true"))
        assert [exits.get(timeout=WAIT).attempt_key for _ in range(2)] == ["first#1", "second#1"]
        # The second's exit can arrive (on the other spawner's reader) before launch() returns.
        deadline = time.monotonic() + WAIT
        while not chained and time.monotonic() < deadline:
            time.sleep(0.01)
        # 0 ("pid not known yet") when it went to the spawner whose reader is calling; else its pid.
        assert len(chained) == 1 and chained[0] >= 0
    finally:
        executor.close()


def test_a_killed_spawner_reports_its_attempts_and_is_restarted(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    pid = executor.launch(request(tmp_path, "long#1", "sleep", "60"))
    assert pid > 0
    spawner_pid = executor._attempts["long#1"].link.pid
    assert spawner_pid in executor.spawner_pids()
    os.kill(spawner_pid, signal.SIGKILL)
    info = exits.get(timeout=WAIT)
    assert info == ExitInfo("long#1", None, SPAWNER_LOST, True)
    wait_until(lambda: not procfs.is_alive(pid), "the lost attempt was not killed")
    assert executor.launch(request(tmp_path, "after#1", "true")) > 0
    assert exits.get(timeout=WAIT) == ExitInfo("after#1", 0, None, True)
    assert executor.launch(request(tmp_path, "later#1", "true")) > 0  # whichever spawner's turn it is
    assert exits.get(timeout=WAIT) == ExitInfo("later#1", 0, None, True)
    pids = executor.spawner_pids()
    assert len(pids) == 2 and spawner_pid not in pids


# Runs as the "old engine": launches a tree through a SpawnerExecutor, prints pids, then dies by kill -9.
OLD_ENGINE = r"""
import os, signal, sys, time
from chalicelib.localbatch.execution.executor import LaunchRequest
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor
token, root = sys.argv[1], sys.argv[2]
executor = SpawnerExecutor(token)
tree = "import subprocess, time; c = subprocess.Popen(['sleep', '60']); print(c.pid, flush=True); time.sleep(60)"
pid = executor.launch(LaunchRequest("old#1", (sys.executable, "-c", tree), {}, root + "/w", root + "/old.log"))
while not open(root + "/old.log").read().strip():
    time.sleep(0.02)
print(pid, open(root + "/old.log").read().strip(), executor._attempts["old#1"].link.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_attempts_survive_an_engine_kill_9_until_kill_orphans(tmp_path: Path) -> None:
    tag = token()
    repo = Path(__file__).resolve().parents[3]
    old = subprocess.run([PY, "-c", OLD_ENGINE, tag, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=repo, check=False)
    assert old.returncode == -signal.SIGKILL, old.stderr
    leader, child, old_spawner = (int(value) for value in old.stdout.split())
    try:
        # EOF without QUIT: the spawner exits and leaves the attempt running.
        wait_until(lambda: not procfs.is_alive(old_spawner), "the old spawner outlived its engine")
        assert procfs.is_alive(leader) and procfs.is_alive(child)
        executor = SpawnerExecutor(tag)
        try:
            assert executor.kill_orphans() == ["old#1"]
            assert executor.kill_orphans() == []
        finally:
            executor.close()
        assert not procfs.is_alive(leader) and not procfs.is_alive(child)
    finally:
        for pgid in (leader,):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
