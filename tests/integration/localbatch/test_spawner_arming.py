"""SpawnerExecutor armed launches (arm / disarm / close) and spare log files, with real processes.

Ordering is shown by evidence the processes leave, never by timing: every job appends
"<key> start" / "<key> end" lines to one journal file, and hosts wait on a gate file the
test creates, so "the successor has not started yet" is a state the test controls.
"""

from __future__ import annotations

import os
import queue
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.localbatch.execution import spawner_build
from chalicelib.localbatch.execution.executor import PULL_ERROR, ExitInfo, LaunchRequest
from chalicelib.localbatch.execution.spawn import START_ERROR
from chalicelib.localbatch.execution.spawner_executor import DISARMED, SpawnerExecutor
from chalicelib.localbatch.execution.spawner_link import encode_disarm

WAIT = 30.0

pytestmark = pytest.mark.skipif(spawner_build.spawner_path() is None,
                                reason=f"conveyor-spawner cannot be built: {spawner_build.last_error()}")

Spawned = tuple[SpawnerExecutor, "queue.SimpleQueue[ExitInfo]"]


def request(root: Path, key: str, *argv: str, **options: object) -> LaunchRequest:
    values: dict[str, object] = {"attempt_key": key, "argv": argv, "env": {}, "workdir": str(root / "w" / key),
                                 "log_path": str(root / "l" / f"{key}.log")}
    values.update(options)
    return LaunchRequest(**values)  # type: ignore[arg-type]


def log_of(root: Path, key: str) -> Path:
    return root / "l" / f"{key}.log"


def job(root: Path, key: str, *, gate: Path | None = None, run_seconds: float = 0.05,
        **options: object) -> LaunchRequest:
    """A job journaling its start and end; with a gate it runs until the gate file exists."""
    journal = shlex.quote(str(root / "journal"))
    wait = (f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.01; done" if gate is not None
            else f"sleep {run_seconds}")
    script = f'echo "{key} start" >> {journal}; echo "{key} ran"; {wait}; echo "{key} end" >> {journal}'
    return request(root, key, "sh", "-c", script, **options)


def journal(root: Path) -> list[str]:
    path = root / "journal"
    return path.read_text().splitlines() if path.exists() else []


def next_exits(exits: queue.SimpleQueue[ExitInfo], count: int) -> list[ExitInfo]:
    return [exits.get(timeout=WAIT) for _ in range(count)]


def wait_until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def disarmed(key: str) -> ExitInfo:
    return ExitInfo(key, exit_code=None, reason=DISARMED, started=False)


def drain_after_close(spawned: Spawned) -> list[ExitInfo]:
    """Closes the executor (its reader thread has delivered everything then) and returns the rest."""
    executor, exits = spawned
    executor.close()
    rest = []
    while not exits.empty():
        rest.append(exits.get_nowait())
    return rest


@pytest.fixture
def spawner() -> Iterator[Spawned]:
    executor = SpawnerExecutor(f"arming-test-{os.getpid()}-{time.monotonic_ns()}", memory_poll_seconds=0.05)
    exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
    executor.set_exit_callback(exits.put)
    yield executor, exits
    executor.close()


# -- arming ---------------------------------------------------------------------


def test_an_armed_attempt_starts_only_after_its_host_exits(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    # The successor fails (exit 3) unless the host's end line is already written when it starts.
    check = f'grep -qx "host end" {shlex.quote(str(tmp_path / "journal"))} || exit 3; echo "next start" >> ' \
            f'{shlex.quote(str(tmp_path / "journal"))}'
    assert executor.arm("host", request(tmp_path, "next", "sh", "-c", check))
    wait_until(lambda: journal(tmp_path) == ["host start"], "the host never started")
    time.sleep(0.2)  # room for a wrong early start to show; the assertions below do not depend on it
    assert not log_of(tmp_path, "next").exists()
    assert "next" not in executor.running()
    gate.touch()
    assert next_exits(exits, 2) == [ExitInfo("host", 0, None, True), ExitInfo("next", 0, None, True)]
    assert journal(tmp_path) == ["host start", "host end", "next start"]


def test_a_chain_runs_in_order_one_at_a_time(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "x", gate=gate)) > 0
    assert executor.arm("x", job(tmp_path, "y"))
    assert executor.arm("y", job(tmp_path, "z"))
    gate.touch()
    assert [(info.attempt_key, info.exit_code, info.started) for info in next_exits(exits, 3)] == [
        ("x", 0, True), ("y", 0, True), ("z", 0, True)]
    assert journal(tmp_path) == ["x start", "x end", "y start", "y end", "z start", "z end"]
    assert [log_of(tmp_path, key).read_text() for key in "xyz"] == ["x ran\n", "y ran\n", "z ran\n"]
    assert drain_after_close(spawner) == []


def test_arming_on_an_unknown_or_ended_attempt_launches_at_once(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    assert executor.arm("never-launched", job(tmp_path, "a"))
    assert next_exits(exits, 1) == [ExitInfo("a", 0, None, True)]
    assert executor.launch(job(tmp_path, "b")) > 0
    assert next_exits(exits, 1) == [ExitInfo("b", 0, None, True)]
    assert executor.arm("b", job(tmp_path, "c"))  # b has ended: c takes its slot at once
    assert next_exits(exits, 1) == [ExitInfo("c", 0, None, True)]
    assert journal(tmp_path) == ["a start", "a end", "b start", "b end", "c start", "c end"]


def test_an_armed_attempt_that_fails_to_start_releases_its_successor(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    missing = str(tmp_path / "no-such-program")
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", request(tmp_path, "broken", missing))
    assert executor.arm("broken", job(tmp_path, "after"))
    gate.touch()
    host, broken, after = next_exits(exits, 3)
    assert host == ExitInfo("host", 0, None, True)
    assert broken.attempt_key == "broken" and not broken.started and broken.exit_code is None
    assert broken.reason is not None and broken.reason.startswith(START_ERROR) and missing in broken.reason
    assert after == ExitInfo("after", 0, None, True)
    assert journal(tmp_path) == ["host start", "host end", "after start", "after end"]


def test_a_second_launch_armed_on_the_same_attempt_is_refused(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", job(tmp_path, "first"))
    assert executor.arm("host", job(tmp_path, "second"))
    (refused,) = next_exits(exits, 1)
    assert refused.attempt_key == "second" and not refused.started and refused.exit_code is None
    assert refused.reason is not None and refused.reason.startswith(START_ERROR)
    assert "already has a launch armed" in refused.reason
    gate.touch()
    assert next_exits(exits, 2) == [ExitInfo("host", 0, None, True), ExitInfo("first", 0, None, True)]
    assert not log_of(tmp_path, "second").exists()


def test_arm_returns_false_and_sends_nothing_for_a_launch_python_refuses(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", request(tmp_path, "empty")) is False
    assert executor.arm("host", job(tmp_path, "imageless", image=f"file://{tmp_path / 'no-image'}")) is False
    # Nothing was kept: the keys are free, and the one launch slot on host is still unused.
    assert executor.arm("host", job(tmp_path, "imageless"))
    gate.touch()
    assert next_exits(exits, 2) == [ExitInfo("host", 0, None, True), ExitInfo("imageless", 0, None, True)]
    # Launched the ordinary way, the refusals are reported through the exit callback.
    assert executor.launch(request(tmp_path, "empty")) == -1
    assert executor.launch(job(tmp_path, "badimage", image=f"file://{tmp_path / 'no-image'}")) == -1
    empty, badimage = next_exits(exits, 2)
    assert empty.attempt_key == "empty" and empty.reason is not None and empty.reason.startswith(START_ERROR)
    assert badimage.attempt_key == "badimage" and badimage.reason is not None
    assert badimage.reason.startswith(PULL_ERROR)
    assert drain_after_close(spawner) == []


# -- disarming ------------------------------------------------------------------


def test_disarm_withdraws_the_successor_and_the_chain_behind_it(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", job(tmp_path, "y"))
    assert executor.arm("y", job(tmp_path, "z"))
    executor.disarm("host")
    assert sorted(next_exits(exits, 2), key=lambda info: info.attempt_key) == [disarmed("y"), disarmed("z")]
    gate.touch()
    assert next_exits(exits, 1) == [ExitInfo("host", 0, None, True)]
    assert drain_after_close(spawner) == []
    assert journal(tmp_path) == ["host start", "host end"]
    assert not log_of(tmp_path, "y").exists() and not log_of(tmp_path, "z").exists()
    assert not (tmp_path / "w" / "y").exists()


def test_disarm_in_the_middle_of_a_chain_keeps_what_is_before(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", job(tmp_path, "y"))
    assert executor.arm("y", job(tmp_path, "z"))
    executor.disarm("y")
    assert next_exits(exits, 1) == [disarmed("z")]
    gate.touch()
    assert next_exits(exits, 2) == [ExitInfo("host", 0, None, True), ExitInfo("y", 0, None, True)]
    assert journal(tmp_path) == ["host start", "host end", "y start", "y end"]
    assert not log_of(tmp_path, "z").exists()


def test_disarm_after_the_successor_started_is_a_no_op(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    host_gate, next_gate = tmp_path / "host-gate", tmp_path / "next-gate"
    assert executor.launch(job(tmp_path, "host", gate=host_gate)) > 0
    assert executor.arm("host", job(tmp_path, "next", gate=next_gate))
    assert executor.arm("next", job(tmp_path, "last"))
    host_gate.touch()
    assert next_exits(exits, 1) == [ExitInfo("host", 0, None, True)]
    wait_until(lambda: "next" in executor.running(), "the armed attempt never started")
    executor.disarm("host")  # host has ended and next runs: nothing left to withdraw
    executor.disarm("next")  # next runs; last is armed on it and is withdrawn ...
    assert next_exits(exits, 1) == [disarmed("last")]
    executor.disarm("next")  # ... and a second disarm finds nothing
    assert "next" in executor.running()
    next_gate.touch()
    assert next_exits(exits, 1) == [ExitInfo("next", 0, None, True)]
    assert drain_after_close(spawner) == []
    assert journal(tmp_path) == ["host start", "host end", "next start", "next end"]
    assert log_of(tmp_path, "next").read_text() == "next ran\n"


def test_close_withdraws_every_armed_launch(spawner: Spawned, tmp_path: Path) -> None:
    executor = spawner[0]
    gate = tmp_path / "gate"
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", job(tmp_path, "y"))
    assert executor.arm("y", job(tmp_path, "z"))
    assert executor.launch(job(tmp_path, "other", gate=gate)) > 0
    assert executor.arm("other", job(tmp_path, "w"))
    wait_until(lambda: sorted(journal(tmp_path)) == ["host start", "other start"], "the hosts never started")
    rest = drain_after_close(spawner)
    assert sorted(rest, key=lambda info: info.attempt_key) == [
        ExitInfo("host", 137, None, True), ExitInfo("other", 137, None, True),
        disarmed("w"), disarmed("y"), disarmed("z")]
    gate.touch()
    time.sleep(0.1)  # a wrongly started successor would journal now; none may
    assert sorted(journal(tmp_path)) == ["host start", "other start"]
    assert not any(log_of(tmp_path, key).exists() for key in "wyz")


# -- spare log files ----------------------------------------------------------------


def test_a_spare_log_is_renamed_into_place(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    spare = tmp_path / "spares" / "one"
    spare.parent.mkdir()
    spare.touch()
    inode = spare.stat().st_ino
    assert executor.launch(job(tmp_path, "job", spare_log=str(spare))) > 0  # the log folder does not exist yet
    assert next_exits(exits, 1) == [ExitInfo("job", 0, None, True)]
    assert not spare.exists()
    log = log_of(tmp_path, "job")
    assert log.read_text() == "job ran\n" and log.stat().st_ino == inode


def test_an_armed_launch_takes_its_spare_log_too(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    gate = tmp_path / "gate"
    spare = tmp_path / "spare"
    spare.touch()
    assert executor.launch(job(tmp_path, "host", gate=gate)) > 0
    assert executor.arm("host", job(tmp_path, "next", spare_log=str(spare)))
    assert spare.exists()  # still waiting: the spare is only claimed at launch
    gate.touch()
    assert next_exits(exits, 2) == [ExitInfo("host", 0, None, True), ExitInfo("next", 0, None, True)]
    assert not spare.exists() and log_of(tmp_path, "next").read_text() == "next ran\n"


def test_an_existing_log_is_never_replaced_by_a_spare(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    spare = tmp_path / "spare"
    spare.touch()
    log = log_of(tmp_path, "job")
    log.parent.mkdir()
    log.write_text("earlier attempt\n")
    inode = log.stat().st_ino
    assert executor.launch(job(tmp_path, "job", spare_log=str(spare))) > 0
    assert next_exits(exits, 1) == [ExitInfo("job", 0, None, True)]
    assert log.read_text() == "earlier attempt\njob ran\n" and log.stat().st_ino == inode
    assert spare.exists() and spare.stat().st_size == 0


def test_a_missing_spare_falls_back_to_creating_the_log(spawner: Spawned, tmp_path: Path) -> None:
    executor, exits = spawner
    assert executor.launch(job(tmp_path, "job", spare_log=str(tmp_path / "gone"))) > 0
    assert next_exits(exits, 1) == [ExitInfo("job", 0, None, True)]
    assert log_of(tmp_path, "job").read_text() == "job ran\n"


def test_a_disarm_that_reaches_the_spawner_after_the_launch_withdraws_nothing(spawner: Spawned,
                                                                              tmp_path: Path) -> None:
    # The race the engine lives with: its DISARM for host is sent while the spawner is already
    # reaping host and launching its successor. Replayed by sending host's DISARM by hand later.
    executor, exits = spawner
    host_gate, next_gate = tmp_path / "host-gate", tmp_path / "next-gate"
    assert executor.launch(job(tmp_path, "host", gate=host_gate)) > 0
    assert executor.arm("host", job(tmp_path, "next", gate=next_gate))
    assert executor.arm("next", job(tmp_path, "last"))
    host_ident, link = executor._attempts["host"].ident, executor._attempts["host"].link
    host_gate.touch()
    assert next_exits(exits, 1) == [ExitInfo("host", 0, None, True)]
    wait_until(lambda: "next" in executor.running(), "the armed attempt never started")
    link.send(encode_disarm(host_ident))
    next_gate.touch()
    assert next_exits(exits, 2) == [ExitInfo("next", 0, None, True), ExitInfo("last", 0, None, True)]
    assert journal(tmp_path) == ["host start", "host end", "next start", "next end", "last start", "last end"]
