"""Warm launches through the real conveyor-spawner: a `python -m` attempt forked from a launcher
sees what a cold one sees, ends the same way, is stopped the same way, and a launcher that
fails or dies only makes attempts cold again."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.localbatch.execution import procfs, spawner_build
from chalicelib.localbatch.execution.container_env import ContainerEnvironment, ContainerOptions
from chalicelib.localbatch.execution.executor import OOM_REASON, ExitInfo, LaunchRequest
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor

pytestmark = pytest.mark.skipif(spawner_build.spawner_path() is None,
                                reason=f"conveyor-spawner cannot be built: {spawner_build.last_error()}")

WAIT = 30.0

PACKAGE_INIT = """import os
IMPORTED_IN = os.getpid()
"""

# What a job can observe about how it was started; the same for a cold and a warm start.
PACKAGE_MAIN = """import json, os, signal, sys
import probe
mode = sys.argv[1]
if mode == "facts":
    facts = {
        "argv": sys.argv[1:], "orig_argv_tail": sys.orig_argv[1:], "path0": sys.path[0], "cwd": os.getcwd(),
        "name": __name__, "env": {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
        "own_group": os.getpgid(0) == os.getpid(), "stdin": os.readlink("/proc/self/fd/0"),
        "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "sigpipe": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
        "main_names": sorted(name for name in globals() if not name.startswith("__")),
        "cgroup": open("/proc/self/cgroup").read(), "executable": sys.executable,
    }
    print(json.dumps(facts))
    print("to stderr", file=sys.stderr)
elif mode == "exit":
    sys.exit(int(sys.argv[2]))
elif mode == "message":
    sys.exit("it went wrong")
elif mode == "raise":
    raise RuntimeError("boom")
elif mode == "interrupt":
    raise KeyboardInterrupt
elif mode == "sleep":
    print("sleeping", flush=True)
    import time
    time.sleep(60)
elif mode == "hog":
    hoard = bytearray(400 * 1024 * 1024)  # zero pages: written below, so they count
    for offset in range(0, len(hoard), 4096):
        hoard[offset] = 1
elif mode == "atexit":
    import atexit
    atexit.register(lambda: print("atexit ran", flush=True))
print("warm" if probe.IMPORTED_IN != os.getpid() else "cold")
"""


@pytest.fixture
def package(tmp_path: Path) -> Path:
    folder = tmp_path / "mods" / "probe"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(PACKAGE_INIT)
    (folder / "__main__.py").write_text(PACKAGE_MAIN)
    return tmp_path / "mods"


class Runner:
    """A SpawnerExecutor (one spawner) with launch-and-wait helpers."""

    def __init__(self, root: Path, modules: tuple[str, ...], mods: Path) -> None:
        self.root = root
        self.mods = mods
        container = ContainerEnvironment(ContainerOptions(warm_modules=modules), str(root / "runtime"))
        self.executor = SpawnerExecutor(f"warm-test-{os.getpid()}-{time.monotonic_ns()}", container=container,
                                        spawners=1, memory_poll_seconds=0.05)
        self.exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
        self.executor.set_exit_callback(self.exits.put)
        self.count = 0

    def request(self, *args: str, memory_mib: int = 0) -> LaunchRequest:
        self.count += 1
        key = f"job-{self.count}"
        return LaunchRequest(attempt_key=key, argv=(sys.executable, "-m", "probe", *args),
                             env={"PYTHONPATH": str(self.mods), "JOB_VAR": key}, workdir=str(self.root / "w" / key),
                             log_path=str(self.root / "logs" / f"{key}.log"), memory_mib=memory_mib)

    def run(self, *args: str) -> tuple[ExitInfo, str]:
        request = self.request(*args)
        assert self.executor.launch(request) > 0
        info = self.exits.get(timeout=WAIT)
        return info, Path(request.log_path).read_text()

    def run_warm(self, *args: str) -> tuple[ExitInfo, str]:
        """Runs until an attempt was warm (the first ones start cold while the launcher loads)."""
        deadline = time.monotonic() + WAIT
        while True:
            info, log = self.run(*args)
            if log.rstrip().endswith("warm") or "warm\n" in log:
                return info, log
            assert time.monotonic() < deadline, f"never warm; last log: {log!r}"
            time.sleep(0.05)


@pytest.fixture
def warm(tmp_path: Path, package: Path) -> Iterator[Runner]:
    runner = Runner(tmp_path / "warm", ("probe",), package)
    yield runner
    runner.executor.close()


@pytest.fixture
def cold(tmp_path: Path, package: Path) -> Iterator[Runner]:
    runner = Runner(tmp_path / "cold", (), package)
    yield runner
    runner.executor.close()


def _facts(log: str, root: Path) -> dict[str, object]:
    line = next(line for line in log.splitlines() if line.startswith("{"))
    facts = json.loads(line.replace(str(root), "ROOT"))  # each runner has its own folder
    facts["env"].pop("JOB_VAR")  # the key differs
    for name in ("argv", "orig_argv_tail"):
        assert isinstance(facts[name], list)
    for key in ("path0", "cwd"):
        facts[key] = Path(str(facts[key])).name.split("-")[0]  # job-N -> job
    facts["env"]["HOME"] = Path(facts["env"]["HOME"]).name.split("-")[0]
    # Named after the attempt, or a pooled one (cgroup_slots.py): each runner's own either way.
    cgroup = str(facts["cgroup"])
    facts["cgroup"] = "attempt cgroup" if "job-" in cgroup or "/pool-" in cgroup else cgroup
    return facts


def test_a_warm_attempt_sees_what_a_cold_one_sees(warm: Runner, cold: Runner) -> None:
    warm_info, warm_log = warm.run_warm("facts")
    cold_info, cold_log = cold.run("facts")
    assert (warm_info.exit_code, cold_info.exit_code) == (0, 0)
    # stderr is line-buffered and stdout block-buffered in both: the same order in the log
    assert [line for line in warm_log.splitlines() if not line.startswith("{")] == ["to stderr", "warm"]
    assert [line for line in cold_log.splitlines() if not line.startswith("{")] == ["to stderr", "cold"]
    warm_facts, cold_facts = _facts(warm_log, warm.root), _facts(cold_log, cold.root)
    assert warm_facts["env"] == cold_facts["env"]
    assert warm_facts == cold_facts


@pytest.mark.parametrize(("args", "code", "in_log"), [
    (("exit", "0"), 0, ""),
    (("exit", "3"), 3, ""),
    (("exit", "300"), 300 & 0xFF, ""),
    (("message",), 1, "it went wrong"),
    (("raise",), 1, "RuntimeError: boom"),
    (("interrupt",), 128 + signal.SIGINT, "KeyboardInterrupt"),
    (("atexit",), 0, "atexit ran"),
])
def test_a_warm_attempt_ends_as_the_interpreter_would(warm: Runner, cold: Runner, args: tuple[str, ...],
                                                       code: int, in_log: str) -> None:
    warm.run_warm("facts")  # the launcher is ready
    warm_info, warm_log = warm.run(*args)
    cold_info, cold_log = cold.run(*args)
    assert warm_info.exit_code == cold_info.exit_code == code
    assert in_log in warm_log and in_log in cold_log


def test_stop_reaches_a_warm_attempts_group(warm: Runner) -> None:
    warm.run_warm("facts")
    request = warm.request("sleep")
    pid = warm.executor.launch(request)
    assert pid > 0
    deadline = time.monotonic() + WAIT
    while "sleeping" not in Path(request.log_path).read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert procfs.parse_environ(procfs.read_environ(pid) or b"").get("CONVEYOR_ENGINE_TOKEN")  # found by a later engine's kill_orphans
    warm.executor.stop(request.attempt_key, 5.0)
    info = warm.exits.get(timeout=WAIT)
    assert info.exit_code == 128 + signal.SIGTERM
    assert not procfs.is_alive(pid)


def test_a_warm_attempt_is_held_to_its_memory_limit(warm: Runner) -> None:
    warm.run_warm("facts")
    request = warm.request("hog", memory_mib=64)
    assert warm.executor.launch(request) > 0
    info = warm.exits.get(timeout=WAIT)
    assert info.reason == OOM_REASON and info.exit_code == 128 + signal.SIGKILL
    assert "warm" not in Path(request.log_path).read_text()  # it never got past the allocation


def test_modules_not_listed_start_cold(tmp_path: Path, package: Path) -> None:
    (package / "other").mkdir()
    (package / "other" / "__init__.py").write_text("")
    (package / "other" / "__main__.py").write_text("print('other ran')\n")
    runner = Runner(tmp_path / "x", ("probe",), package)
    try:
        runner.run_warm("facts")
        request = LaunchRequest(attempt_key="other", argv=(sys.executable, "-m", "other"),
                                env={"PYTHONPATH": str(package)}, workdir=str(tmp_path / "x" / "w" / "other"),
                                log_path=str(tmp_path / "x" / "other.log"))
        runner.executor.launch(request)
        assert runner.exits.get(timeout=WAIT).exit_code == 0
        assert Path(request.log_path).read_text() == "other ran\n"
        _, log = runner.run("plain")  # the warm path still serves its own module
        assert log.strip() == "warm"
    finally:
        runner.executor.close()


def test_a_launcher_that_cannot_preload_leaves_attempts_cold(tmp_path: Path, package: Path) -> None:
    runner = Runner(tmp_path / "x", ("probe:no_such_module_here",), package)
    try:
        for _ in range(5):
            info, log = runner.run("plain")
            assert info.exit_code == 0
            assert log.strip() == "cold"
            time.sleep(0.1)
    finally:
        runner.executor.close()


def _launcher_pids(marker_token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"warm_launcher.py" in cmdline and procfs.parse_environ(procfs.read_environ(int(entry)) or b"").get("CONVEYOR_ENGINE_TOKEN") == marker_token:
            found.append(int(entry))
    return found


def test_a_killed_launcher_leaves_attempts_cold_and_running(warm: Runner) -> None:
    warm.run_warm("facts")
    launchers = _launcher_pids(warm.executor._token)
    assert len(launchers) == 1
    os.kill(launchers[0], signal.SIGKILL)
    time.sleep(0.2)
    for _ in range(3):
        info, log = warm.run("plain")
        assert info.exit_code == 0
        assert log.strip() == "cold"


def test_an_orphan_ending_does_not_end_what_shares_its_group(cold: Runner, tmp_path: Path) -> None:
    # The spawner is a child subreaper (for warm launches): a job's orphaned descendants are
    # reparented to it and reaped there. Only an attempt's own group ends with its leader:
    # here an orphan leads a group of its own, and its child must outlive it.
    script = tmp_path / "orphan.py"
    script.write_text("import os, time\n"
                      "if os.fork() == 0:\n"
                      "    if os.fork() == 0:\n"
                      "        os.setpgid(0, 0)\n"
                      "        if os.fork() == 0:\n"
                      "            time.sleep(0.6)\n"
                      "            open('survivor', 'w').write('survived')\n"
                      "            os._exit(0)\n"
                      "        time.sleep(0.2)\n"
                      "        os._exit(0)\n"
                      "    os._exit(0)\n"
                      "time.sleep(1.5)\n"
                      "print(open('survivor').read() if os.path.exists('survivor') else 'killed')\n")
    request = LaunchRequest(attempt_key="orphan", argv=(sys.executable, str(script)), env={},
                            workdir=str(tmp_path / "w-orphan"), log_path=str(tmp_path / "orphan.log"))
    cold.executor.launch(request)
    info = cold.exits.get(timeout=WAIT)
    assert info.exit_code == 0
    assert Path(request.log_path).read_text() == "survived\n"
