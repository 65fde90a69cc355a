"""jobStateTimeLimitActions: a head-of-queue job blocked for a matching reason is cancelled in time."""

from __future__ import annotations

from pathlib import Path

from chalicelib.localbatch.model import BLOCKED_CPU
from tests.unit.localbatch.test_scheduler import make_rig


def test_blocked_head_is_cancelled_after_max_time_and_unblocks_the_queue(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    rig.register("small")
    rig.register("huge", vcpus="64")
    rig.batch.update_job_queue(jobQueue="default", jobStateTimeLimitActions=[
        {"reason": "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", "state": "RUNNABLE",
         "maxTimeSeconds": 600, "action": "CANCEL"}])
    huge = rig.submit("huge", "huge")
    small = rig.submit("small", "small")
    rig.tick()
    assert rig.status(huge) == "RUNNABLE" and rig.job(huge)["statusReason"] == BLOCKED_CPU
    assert rig.status(small) == "RUNNABLE"  # FIFO: waits behind the blocked head
    rig.clock.advance(599)
    rig.tick()
    assert rig.status(huge) == "RUNNABLE"
    rig.clock.advance(2)
    rig.tick()
    detail = rig.job(huge)
    assert detail["status"] == "FAILED" and detail["isCancelled"] is True
    assert detail["statusReason"] == BLOCKED_CPU
    assert rig.status(small) in ("STARTING", "RUNNING")
    rig.engine.stop()


def test_action_for_another_reason_leaves_the_job_blocked(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    rig.register("huge", vcpus="64")
    rig.batch.update_job_queue(jobQueue="default", jobStateTimeLimitActions=[
        {"reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", "state": "RUNNABLE",
         "maxTimeSeconds": 600, "action": "CANCEL"}])
    huge = rig.submit("huge", "huge")
    rig.tick()
    rig.clock.advance(3600)
    rig.tick()
    assert rig.status(huge) == "RUNNABLE"
    rig.engine.stop()
