"""Attempt timeouts on real processes: the engine's clock is jumped past the 60 s minimum."""

from __future__ import annotations

import time
from pathlib import Path

from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from chalicelib.localbatch.scheduling.scheduler import EngineOptions
from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import JOBS, pid_alive, register, wait_file


class JumpClock:
    """Real time plus an offset the test can jump forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def test_timeout_terminates_then_kills_and_is_not_retried(tmp_path: Path) -> None:
    clock = JumpClock()
    engine = Engine(tmp_path / "engine", host=HostCapacity(vcpus=2, memory_mib=4096),
                    options=EngineOptions(kill_grace_seconds=1.0), clock=clock).start()
    try:
        batch = engine.client()
        pid_file = tmp_path / "pid"
        stubborn = register(batch, "stubborn", ["python", str(JOBS / "ignore_term.py"), str(pid_file)])
        polite = register(batch, "polite", ["sleep", "30"])
        strategy = {"attempts": 3}
        jobs = [batch.submit_job(jobName=name, jobQueue="default", jobDefinition=jd, retryStrategy=strategy,
                                 timeout={"attemptDurationSeconds": 60})["jobId"]
                for name, jd in (("stubborn", stubborn), ("polite", polite))]
        for job in jobs:
            wait_for_status(batch, job, "RUNNING")
        pid = int(wait_file(pid_file))
        wait_until(lambda: "ready" in engine.read_log(jobs[0]), what="the handler to be installed")
        clock.offset_ms += 61_000
        quick = register(batch, "quick", ["true"])
        batch.submit_job(jobName="wake", jobQueue="default", jobDefinition=quick)  # wakes the scheduler now
        for job in jobs:
            detail = wait_for_status(batch, job, "FAILED", deadline=20)
            assert detail["statusReason"] == "Job attempt duration exceeded timeout"
            assert len(detail["attempts"]) == 1  # timeouts are never retried
        assert "got SIGTERM" in engine.read_log(jobs[0])  # SIGTERM first, SIGKILL after the grace
        assert not pid_alive(pid)
    finally:
        engine.stop()
