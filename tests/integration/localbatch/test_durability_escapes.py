"""kill -9 of `conveyor serve` while jobs hide from it: after the restart no process of an
earlier attempt survives, whatever the job did to its environment, process group or session.

Each job records the pids of every process it makes (per attempt); the trial kills the
engine with SIGKILL, restarts it on the same state and checks that every recorded process of
attempt 1 is gone, and that attempt 2 never overlapped it. Finding the processes is the
engine's business (a cgroup per attempt where the host allows it); these tests only look at pids.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import boto_batch, kill_group_quietly, pid_alive, register, stop_serve

pytestmark = pytest.mark.slow
RETRY = {"attempts": 3, "evaluateOnExit": [{"action": "RETRY", "onStatusReason": "Host EC2*"},
                                           {"action": "EXIT", "onReason": "*"}]}

# Each command appends "<pid>" lines to $MARKS/<job>-<attempt>.pids for every process it
# makes, and keeps its main process alive so the attempt is still running at the kill -9.
P = '"$MARKS/$AWS_BATCH_JOB_ID-$AWS_BATCH_JOB_ATTEMPT.pids"'
ESCAPES = {
    # The whole environment is dropped (the tag variables with it) and the process replaced.
    "env-i": f"echo $$ >> {P}; exec env -i /bin/sleep 300",
    # A new session and process group, its own child in the background; the leader stays.
    "setsid": f"setsid sh -c 'sleep 300 & echo $! >> {P}; echo $$ >> {P}; wait' & echo $$ >> {P}; sleep 300",
    # A double fork: the grandchild is reparented away from the attempt's tree.
    "double-fork": f"( (sleep 300 & echo $! >> {P}) & ); echo $$ >> {P}; sleep 300",
    # Both: a daemon that clears its environment and leaves the session.
    "daemon-env-i": f"(setsid env -i /bin/sleep 300 & echo $! >> {P}) ; echo $$ >> {P}; sleep 300",
}


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("kill_round", [1, 2])
def test_no_process_of_an_earlier_attempt_survives_a_restart(serve, tmp_path: Path, kill_round: int) -> None:
    data_dir, marks = tmp_path / "data", tmp_path / "marks"
    marks.mkdir()
    os.environ["MARKS"] = str(marks)  # passed explicitly to jobs with --pass-env
    try:
        first = serve(data_dir, "--vcpus", "8", "--pass-env", "MARKS")
        batch = boto_batch(first.url)
        jobs = {}
        for name, script in ESCAPES.items():
            definition = register(batch, name, ["sh", "-c", script])
            jobs[name] = batch.submit_job(jobName=name, jobQueue="default", jobDefinition=definition,
                                          retryStrategy=RETRY)["jobId"]
        expected = {"env-i": 1, "setsid": 3, "double-fork": 2, "daemon-env-i": 2}
        for attempt in range(1, kill_round + 1):
            for name, job in jobs.items():
                wait_for_status(batch, job, "RUNNING")
                wait_until(lambda: len(_pids(marks / f"{job}-{attempt}.pids")) >= expected[name],  # noqa: B023
                           deadline=30, what=f"{name}'s processes to start")
            old = {name: _pids(marks / f"{job}-{attempt}.pids") for name, job in jobs.items()}
            assert all(pid_alive(pid) for pids in old.values() for pid in pids)
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(timeout=10)
            stop_serve(first)
            assert all(pid_alive(pid) for pids in old.values() for pid in pids), "attempts outlive the engine"
            first = serve(data_dir, "--vcpus", "8", "--pass-env", "MARKS")
            batch = boto_batch(first.url)
            # serve prints its line only after the restart kill has ended the earlier attempts.
            survivors = {name: [pid for pid in pids if pid_alive(pid)] for name, pids in old.items()}
            assert not any(survivors.values()), survivors
        batch = boto_batch(first.url)
        for name, job in jobs.items():
            detail = batch.describe_jobs(jobs=[job])["jobs"][0]
            assert detail["status"] in ("RUNNABLE", "STARTING", "RUNNING"), (name, detail["status"])
            batch.terminate_job(jobId=job, reason="trial over")
        for job in jobs.values():
            wait_for_status(batch, job, "FAILED")
    finally:
        os.environ.pop("MARKS", None)
        for path in marks.glob("*.pids"):
            for pid in _pids(path):
                kill_group_quietly(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


@pytest.mark.parametrize("kind", ["process", "spawner"])
def test_a_later_executor_ends_an_earlier_ones_hidden_processes(tmp_path: Path, kind: str) -> None:
    """The same check in process for both executors: a second executor with the engine's token
    (as after a restart) ends the first one's attempts, which have hidden as above."""
    from chalicelib.localbatch.execution.executor import LaunchRequest, ProcessExecutor
    from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor

    make = ProcessExecutor if kind == "process" else SpawnerExecutor
    token = f"escape-{os.getpid()}-{kind}"
    first, marks = make(token), tmp_path / "marks"
    marks.mkdir()
    first.set_exit_callback(lambda info: None)
    for name, script in ESCAPES.items():
        first.launch(LaunchRequest(attempt_key=f"{name}#1", argv=("sh", "-c", script),
                                   env={"MARKS": str(marks), "AWS_BATCH_JOB_ID": name, "AWS_BATCH_JOB_ATTEMPT": "1"},
                                   workdir=str(tmp_path / name), log_path=str(tmp_path / f"{name}.log"),
                                   memory_mib=64))
    expected = {"env-i": 1, "setsid": 3, "double-fork": 2, "daemon-env-i": 2}
    for name, count in expected.items():
        wait_until(lambda: len(_pids(marks / f"{name}-1.pids")) >= count, deadline=30,  # noqa: B023
                   what=f"{name}'s processes")
    pids = [pid for name in ESCAPES for pid in _pids(marks / f"{name}-1.pids")]
    second = make(token)
    try:
        killed = second.kill_orphans()
        assert set(killed) == {f"{name}#1" for name in ESCAPES}
        assert not [pid for pid in pids if pid_alive(pid)]
    finally:
        second.close()
        first.close()
        for pid in pids:
            kill_group_quietly(pid)
