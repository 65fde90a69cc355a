"""Both process executors (Python and C spawner) with real processes: exit codes, env, images, logs,
start errors, stop, OOM, volume."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.localbatch.execution.executor import (
    OOM_REASON,
    ExitInfo,
    LaunchError,
    LaunchRequest,
    ProcessExecutor,
)
from chalicelib.localbatch.execution.spawner_build import last_error, spawner_path
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor

PY = sys.executable
WAIT = 30.0  # generous: only reached when something is broken


class Harness:
    """An executor whose exits land in a queue, plus request building under tmp_path."""

    def __init__(self, root: Path, kind: str = "process") -> None:
        self.root = root
        self.token = f"test-{os.getpid()}-{time.monotonic_ns()}"
        executor_class = SpawnerExecutor if kind == "spawner" else ProcessExecutor
        self.executor = executor_class(self.token, memory_poll_seconds=0.05)
        self.exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
        self.executor.set_exit_callback(self.exits.put)

    def request(self, key: str, *argv: str, **options: object) -> LaunchRequest:
        safe = key.replace(":", "_").replace("#", "_")
        values: dict[str, object] = {
            "attempt_key": key, "argv": argv, "env": {"AWS_BATCH_JOB_ID": key.split("#")[0]},
            "workdir": str(self.root / "work" / safe), "log_path": str(self.root / "logs" / f"{safe}.log"),
        }
        values.update(options)
        return LaunchRequest(**values)  # type: ignore[arg-type]

    def run(self, key: str, *argv: str, **options: object) -> ExitInfo:
        self.executor.launch(self.request(key, *argv, **options))
        return self.next_exit()

    def next_exit(self) -> ExitInfo:
        return self.exits.get(timeout=WAIT)

    def log(self, key: str) -> str:
        safe = key.replace(":", "_").replace("#", "_")
        return (self.root / "logs" / f"{safe}.log").read_text()

    def wait_for_log(self, key: str, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while text not in self.log(key):
            assert time.monotonic() < deadline, f"{text!r} never appeared in the log of {key}"
            time.sleep(0.02)


@pytest.fixture(params=["process", "spawner"])
def executor_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "spawner" and spawner_path() is None:
        pytest.skip(f"conveyor-spawner cannot be built: {last_error()}")
    return str(request.param)


@pytest.fixture
def harness(tmp_path: Path, executor_kind: str) -> Iterator[Harness]:
    made = Harness(tmp_path, executor_kind)
    yield made
    made.executor.close()


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_reported(harness: Harness, code: int) -> None:
    info = harness.run(f"exit-{code}#1", PY, "-c", f"raise SystemExit({code})")
    assert info == ExitInfo(f"exit-{code}#1", code, None, True)


def test_killed_by_signal_is_128_plus_signal(harness: Harness) -> None:
    info = harness.run("sig#1", PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)")
    assert info.exit_code == 128 + 10


def test_launch_returns_pid_that_leads_its_own_process_group(harness: Harness) -> None:
    pid = harness.executor.launch(harness.request("grp#1", PY, "-c", "import os; print(os.getpgrp())"))
    assert harness.next_exit().exit_code == 0
    assert harness.log("grp#1").split() == [str(pid)]


def test_child_sees_batch_env_runtime_python_and_tags(harness: Harness) -> None:
    info = harness.run("job-1:3#2", "python", "-c", "import json, os; print(json.dumps(dict(os.environ)))",
                       env={"AWS_BATCH_JOB_ID": "job-1:3", "AWS_BATCH_JOB_ATTEMPT": "2",
                            "AWS_BATCH_JOB_ARRAY_INDEX": "3"})
    assert info.exit_code == 0
    env = json.loads(harness.log("job-1:3#2"))
    assert env["AWS_BATCH_JOB_ID"] == "job-1:3"
    assert env["AWS_BATCH_JOB_ATTEMPT"] == "2"
    assert env["AWS_BATCH_JOB_ARRAY_INDEX"] == "3"
    # The image's runtime folder, never the engine's own virtualenv, provides `python`.
    assert env["PATH"].split(os.pathsep)[0].endswith("/bin")
    assert os.path.dirname(sys.executable) not in env["PATH"].split(os.pathsep)
    assert "VIRTUAL_ENV" not in env
    assert env["CONVEYOR_ENGINE_TOKEN"] == harness.token
    assert env["CONVEYOR_ATTEMPT_KEY"] == "job-1:3#2"


def test_cwd_is_the_created_workdir(harness: Harness, tmp_path: Path) -> None:
    workdir = tmp_path / "deep" / "scratch" / "a1"
    info = harness.run("cwd#1", PY, "-c", "import os; print(os.getcwd())", workdir=str(workdir))
    assert info.exit_code == 0
    assert harness.log("cwd#1").strip() == str(workdir)


def test_file_url_image_is_on_path_and_pythonpath(harness: Harness, tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()
    (image / "stage_lib.py").write_text("GREETING = 'from the image'\n")
    tool = image / "stage-tool"
    tool.write_text(f"#!{PY}\nimport stage_lib\nprint(stage_lib.GREETING)\n")
    tool.chmod(0o755)
    info = harness.run("img#1", "stage-tool", image=f"file://{image}")
    assert info.exit_code == 0, harness.log("img#1")
    assert harness.log("img#1").strip() == "from the image"
    # An absolute folder works the same way.
    assert harness.run("img#2", "stage-tool", image=str(image)).exit_code == 0


def test_missing_local_image_is_cannot_pull(harness: Harness, tmp_path: Path) -> None:
    pid = harness.executor.launch(harness.request("noimg#1", "true", image=f"file://{tmp_path}/missing"))
    info = harness.next_exit()
    assert pid == -1
    assert info.started is False and info.exit_code is None
    assert info.reason is not None and info.reason.startswith("CannotPullContainerError: ")


def test_stdout_and_stderr_are_appended_to_the_log(harness: Harness) -> None:
    script = "import sys; print('out line', flush=True); print('err line', file=sys.stderr)"
    assert harness.run("log#1", PY, "-c", script).exit_code == 0
    assert harness.log("log#1") == "out line\nerr line\n"
    assert harness.run("log#1-again", PY, "-c", "print('more')",
                       log_path=str(harness.root / "logs" / "log_1.log")).exit_code == 0
    assert harness.log("log#1") == "out line\nerr line\nmore\n"


def test_log_exists_even_when_nothing_is_printed(harness: Harness) -> None:
    assert harness.run("quiet#1", "true").exit_code == 0
    assert harness.log("quiet#1") == ""


@pytest.mark.parametrize(
    ("program", "detail"),
    [("no-such-command-xyz", "No such file or directory"), ("not-executable", "Permission denied")],
)
def test_cannot_start_is_reported_through_the_callback(
    harness: Harness, tmp_path: Path, program: str, detail: str
) -> None:
    plain_file = tmp_path / "not-executable"
    plain_file.write_text("echo hi\n")
    plain_file.chmod(0o644)
    argv0 = str(plain_file) if program == "not-executable" else program
    pid = harness.executor.launch(harness.request("nostart#1", argv0))
    info = harness.next_exit()
    assert pid == -1
    assert (info.attempt_key, info.exit_code, info.started) == ("nostart#1", None, False)
    assert info.reason is not None
    assert info.reason.startswith("CannotStartContainerError: ") and detail in info.reason
    assert harness.executor.running() == []


def test_workdir_that_cannot_be_created_is_cannot_start(harness: Harness, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    harness.executor.launch(harness.request("badcwd#1", "true", workdir=str(blocker / "sub")))
    info = harness.next_exit()
    assert info.started is False
    assert info.reason is not None and "Not a directory" in info.reason


def test_duplicate_running_key_is_a_launch_error(harness: Harness) -> None:
    harness.executor.launch(harness.request("dup#1", "sleep", "30"))
    with pytest.raises(LaunchError, match="already running"):
        harness.executor.launch(harness.request("dup#1", "true"))
    harness.executor.stop("dup#1", 0)
    assert harness.next_exit().exit_code == 137


def test_stop_sends_sigterm_first(harness: Harness) -> None:
    harness.executor.launch(harness.request("term#1", "sleep", "30"))
    assert harness.executor.running() == ["term#1"]
    harness.executor.stop("term#1", 5.0)
    info = harness.next_exit()
    assert info.exit_code == 128 + 15
    assert harness.executor.running() == []


def test_stop_sigkills_a_child_that_ignores_sigterm_after_grace(harness: Harness) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('ready', flush=True); time.sleep(60)")
    harness.executor.launch(harness.request("stubborn#1", PY, "-c", script))
    harness.wait_for_log("stubborn#1", "ready")
    harness.executor.stop("stubborn#1", 0.5)
    harness.executor.stop("stubborn#1", 0.5)  # idempotent
    info = harness.next_exit()
    assert (info.exit_code, info.reason, info.started) == (137, None, True)
    harness.executor.stop("stubborn#1", 0.5)  # after the end: a no-op
    harness.executor.stop("never-launched#1", 0.5)
    assert harness.exits.empty()


def test_stop_kills_the_whole_process_group(harness: Harness) -> None:
    script = ("import subprocess, time; c = subprocess.Popen(['sleep', '60']); "
              "print(c.pid, flush=True); time.sleep(60)")
    harness.executor.launch(harness.request("tree#1", PY, "-c", script))
    deadline = time.monotonic() + WAIT
    while not harness.log("tree#1").strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = int(harness.log("tree#1"))
    harness.executor.stop("tree#1", 2.0)
    assert harness.next_exit().exit_code == 143
    wait_until_gone(child)


def test_group_members_left_behind_die_with_the_main_process(harness: Harness) -> None:
    script = "import subprocess; print(subprocess.Popen(['sleep', '60']).pid, flush=True)"
    assert harness.run("leftover#1", PY, "-c", script).exit_code == 0
    wait_until_gone(int(harness.log("leftover#1")))


def test_memory_over_limit_of_the_group_is_an_oom_kill(harness: Harness) -> None:
    # The parent stays small; its child allocates 300 MiB against a 50 MiB limit.
    hog = "import time; b = bytearray(b'x') * (300 << 20); time.sleep(60)"
    script = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hog!r}])"
    info = harness.run("oom#1", PY, "-c", script, memory_mib=50)
    assert info == ExitInfo("oom#1", 137, OOM_REASON, True)


def test_memory_under_limit_runs_to_completion(harness: Harness) -> None:
    script = "b = bytearray(b'x') * (20 << 20); print(len(b))"
    info = harness.run("fits#1", PY, "-c", script, memory_mib=512)
    assert (info.exit_code, info.reason) == (0, None)


def test_300_true_processes_on_2_slots_all_report(harness: Harness) -> None:
    total, launched, seen = 300, 0, set()
    for _ in range(2):
        harness.executor.launch(harness.request(f"t:{launched}#1", "true"))
        launched += 1
    while len(seen) < total:
        info = harness.next_exit()
        assert info.exit_code == 0 and info.attempt_key not in seen
        seen.add(info.attempt_key)
        if launched < total:
            harness.executor.launch(harness.request(f"t:{launched}#1", "true"))
            launched += 1
    assert harness.exits.empty()
    assert harness.executor.running() == []


def test_concurrent_launches_from_two_threads_all_report(harness: Harness) -> None:
    # The engine launches from several launcher threads at once.
    per_thread = 100
    errors: list[BaseException] = []

    def launch_many(prefix: str) -> None:
        try:
            for index in range(per_thread):
                harness.executor.launch(harness.request(f"{prefix}:{index}#1", "true"))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=launch_many, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    keys = {harness.next_exit().attempt_key for _ in range(2 * per_thread)}
    assert len(keys) == 2 * per_thread
    assert harness.exits.empty()


def test_close_kills_running_attempts_and_reports_them(tmp_path: Path, executor_kind: str) -> None:
    made = Harness(tmp_path, executor_kind)
    made.executor.launch(made.request("long#1", "sleep", "60"))
    made.executor.close()
    assert made.next_exit().exit_code == 137
    made.executor.close()  # idempotent


def wait_until_gone(pid: int) -> None:
    from chalicelib.localbatch.execution.procfs import is_alive

    deadline = time.monotonic() + WAIT
    while is_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.02)
