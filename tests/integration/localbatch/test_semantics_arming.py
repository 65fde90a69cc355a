"""Armed successors and recycled quiet logs on the real engine, spawner and processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from chalicelib.localbatch.execution import spawner_build
from chalicelib.localbatch.execution.logpool import SPARE_FOLDER
from chalicelib.localbatch.execution.spawner_executor import SpawnerExecutor
from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import LiveEngine, register

pytestmark = pytest.mark.skipif(spawner_build.spawner_path() is None,
                                reason=f"conveyor-spawner cannot be built: {spawner_build.last_error()}")


def one_slot(make_engine: Callable[..., LiveEngine]) -> LiveEngine:
    live = make_engine(vcpus=1)
    assert isinstance(live.engine.executor, SpawnerExecutor)
    return live


def log_file(live: LiveEngine, job_id: str) -> Path:
    stream = live.batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]["logStreamName"]
    return Path(live.engine.scheduler.log_path(stream))


def test_jobs_queued_behind_a_busy_slot_run_one_after_another_in_order(make_engine, tmp_path: Path) -> None:
    live = one_slot(make_engine)
    trace = tmp_path / "trace"
    jd = register(live.batch, "note", ["sh", "-c", f'echo "start $AWS_BATCH_JOB_ARRAY_INDEX" >> {trace}; '
                                                   f'sleep 0.1; echo "end $AWS_BATCH_JOB_ARRAY_INDEX" >> {trace}'])
    array = live.submit("notes", jd, arrayProperties={"size": 6})
    wait_for_status(live.batch, array, "SUCCEEDED", deadline=60)
    lines = trace.read_text().split("\n")[:-1]
    # One slot: never two at once, and in index order (each armed on the one before).
    assert lines == [f"{word} {i}" for i in range(6) for word in ("start", "end")]
    for index in range(6):
        statuses = [e["detail"]["status"] for e in live.engine.read_events(0, 10000)[0]
                    if e["detail"].get("jobId") == f"{array}:{index}"]
        assert statuses[-3:] == ["STARTING", "RUNNING", "SUCCEEDED"]


def test_cancel_of_a_job_armed_behind_a_running_one_never_runs_it(make_engine, tmp_path: Path) -> None:
    live = one_slot(make_engine)
    gate = tmp_path / "gate"
    ran = tmp_path / "ran"
    hold = register(live.batch, "hold", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"])
    mark = register(live.batch, "mark", ["sh", "-c", f"touch {ran}"])
    first = live.submit("hold", hold)
    wait_for_status(live.batch, first, "RUNNING")
    second = live.submit("mark", mark)
    third = live.submit("mark-too", mark)
    wait_until(lambda: live.engine.scheduler.jobs[second].armed_on is not None, what="the second job to be armed")
    live.batch.cancel_job(jobId=second, reason="not needed")
    detail = wait_for_status(live.batch, second, "FAILED")
    assert detail["isCancelled"] is True and detail["statusReason"] == "not needed"
    assert live.batch.describe_jobs(jobs=[first])["jobs"][0]["status"] == "RUNNING"
    gate.touch()
    wait_for_status(live.batch, third, "SUCCEEDED")  # withdrawn with the chain, then run in its turn
    assert ran.exists()
    assert live.batch.describe_jobs(jobs=[second])["jobs"][0]["attempts"] == []


def test_quiet_logs_are_recycled_and_logs_with_output_are_kept(make_engine) -> None:
    live = make_engine()
    quiet = live.submit("quiet", register(live.batch, "quiet", ["true"]))
    loud = live.submit("loud", register(live.batch, "loud", ["echo", "kept"]))
    wait_for_status(live.batch, quiet, "SUCCEEDED")
    wait_for_status(live.batch, loud, "SUCCEEDED")
    quiet_log, loud_log = log_file(live, quiet), log_file(live, loud)
    pool = live.engine.scheduler.log_pool
    wait_until(lambda: str(quiet_log) in pool, what="the quiet log to become a spare")
    assert live.engine.read_log(quiet) == ""
    assert str(loud_log) not in pool
    assert loud_log.read_text() == "kept\n" and live.engine.read_log(loud) == "kept\n"
    spares = Path(live.engine.scheduler.log_path(SPARE_FOLDER))
    assert spares.is_dir() and any(os.scandir(spares))
    while pool.take():  # spares ahead of it would go to launches first: the next launch takes it
        pass
    pool.give_back(str(quiet_log))
    later = live.submit("later", register(live.batch, "later", ["echo", "mine"]))
    wait_for_status(live.batch, later, "SUCCEEDED")
    assert not quiet_log.exists()  # renamed to the later job's log at its launch
    assert live.engine.read_log(quiet) == "" and live.engine.read_log(later) == "mine\n"
