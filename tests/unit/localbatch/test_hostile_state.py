"""State that validation now refuses but an old store or a bug could still hold: the scheduler and
the group commit must not be stopped by it (issue 11, defects 2, 3 and 10), driven by tick()."""

from __future__ import annotations

from pathlib import Path

from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.execution.executor import ExitInfo
from tests.unit.localbatch.test_scheduler import FakeExecutor, make_rig


def test_a_huge_max_vcpus_on_one_environment_stops_no_queue(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    try:
        rig.register()
        rig.batch.create_compute_environment(computeEnvironmentName="big", type="MANAGED",
                                             computeResources={"type": "EC2", "maxvCpus": 4})
        rig.batch.create_job_queue(jobQueueName="bigq", priority=5,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "big"}])
        rig.engine.scheduler.ces["big"].compute_resources["maxvCpus"] = 10**400  # as a store written before the bound
        stuck = rig.submit(queue="bigq")
        plain = rig.submit(queue="default")
        rig.tick()
        assert rig.status(plain) == "RUNNING"
        assert rig.status(stuck) in ("RUNNING", "RUNNABLE")
    finally:
        rig.engine.stop()


def test_unencodable_text_in_one_job_does_not_poison_the_group_commit(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    bad, good = rig.submit("bad"), rig.submit("good")
    rig.tick()
    scheduler = rig.engine.scheduler
    with rig.engine.lock:  # a reason that got past validation (it no longer can: see test_hostile_input)
        scheduler.terminate(scheduler.jobs[bad], "bad \ud800 reason")
        scheduler.terminate(scheduler.jobs[good], "fine reason")
    rig.tick()
    assert rig.status(good) in ("RUNNING", "FAILED")
    for key in list(rig.ex.live):
        rig.ex.finish(key, 143)
    rig.tick()
    later = rig.submit("later")
    rig.tick()
    assert rig.status(later) == "RUNNING"
    rig.engine.stop()

    reopened = Engine(tmp_path / "engine", executor=FakeExecutor())
    try:
        jobs = reopened.scheduler.jobs
        assert jobs[bad].status.value == "FAILED" and jobs[bad].is_terminated
        assert (jobs[bad].status_reason or "").startswith("bad ")
        assert jobs[good].status.value == "FAILED" and jobs[good].status_reason == "fine reason"
        assert jobs[later].status.value == "RUNNING"
    finally:
        reopened.stop()


def test_the_reclaim_rate_is_per_attempt_whatever_its_length(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "spot")
    try:
        rig.register()
        rig.batch.create_compute_environment(
            computeEnvironmentName="spot", type="MANAGED", tags={"conveyor:reclaim-rate": "0.25"},
            computeResources={"type": "SPOT", "maxvCpus": 2, "subnets": []})
        rig.batch.create_job_queue(jobQueueName="spotq", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "spot"}])
        jobs = [rig.submit(f"j{i}", queue="spotq") for i in range(400)]
        scheduler = rig.engine.scheduler
        for _ in range(2000):
            rig.tick(1)
            if not rig.ex.live and all(scheduler.jobs[j].status.is_terminal for j in jobs):
                break
            for key in list(rig.ex.live):  # every attempt ends at once: far shorter than the 50 ms minimum
                rig.ex.live.discard(key)
                rig.ex.callback(ExitInfo(key, 0, None, True))
        details = [d for i in range(0, 400, 100) for d in rig.batch.describe_jobs(jobs=jobs[i:i + 100])["jobs"]]
        lost = sum(1 for d in details if d["status"] == "FAILED" and d["statusReason"].startswith("Host EC2"))
        assert {d["status"] for d in details} <= {"SUCCEEDED", "FAILED"}
        assert 60 <= lost <= 140, lost  # binomial(400, 0.25): mean 100, sd 8.7
    finally:
        rig.engine.stop()
