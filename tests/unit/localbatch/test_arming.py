"""Armed successors (arming.py) driven by tick() with a fake executor that arms like the spawner does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.localbatch.clock import FakeClock
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.execution.executor import ExitInfo, LaunchRequest
from chalicelib.localbatch.execution.spawner_executor import DISARMED
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from chalicelib.localbatch.scheduling.scheduler import EngineOptions
from tests.unit.localbatch.test_scheduler import FakeExecutor, Rig


class ArmingExecutor(FakeExecutor):
    """FakeExecutor plus the spawner's arming rules: a launch armed on an attempt starts the
    moment that attempt ends (before the engine hears of the end), at once if it is neither
    running nor armed; disarm drops the chain and reports DISARMED for each."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: dict[str, LaunchRequest] = {}  # after key -> request
        self.refuse: set[str] = set()  # attempt keys whose arm() returns False

    def arm(self, after_key: str, request: LaunchRequest) -> bool:
        if request.attempt_key in self.refuse:
            return False
        assert after_key not in self.armed, "two launches armed on one attempt"
        known = after_key in self.live or any(r.attempt_key == after_key for r in self.armed.values())
        if known:
            self.armed[after_key] = request
        else:
            self.launch(request)
        return True

    def disarm(self, after_key: str) -> None:
        while after_key in self.armed:
            request = self.armed.pop(after_key)
            self.callback(ExitInfo(request.attempt_key, None, DISARMED, False))
            after_key = request.attempt_key

    def finish(self, key: str, code: int | None = 0, reason: str | None = None, started: bool = True) -> None:
        super().finish(key, code, reason, started)
        successor = self.armed.pop(key, None)
        if successor is not None:
            self.launch(successor)


def make_rig(path: Path, **host: Any) -> Rig:
    capacity = HostCapacity(**{"vcpus": 2, "memory_mib": 4096, "gpus": 0, **host})
    engine = Engine(path, host=capacity, executor=ArmingExecutor(), clock=FakeClock(),
                    options=EngineOptions(kill_grace_seconds=1, seed=7))
    engine.scheduler.launcher = None
    return Rig(engine, engine.executor, engine.scheduler.clock)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    yield rig
    rig.engine.stop()


def statuses(rig: Rig, job: str) -> list[str]:
    return [e["detail"]["status"] for e in rig.events() if e["detail"].get("jobId") == job]


def armed_keys(rig: Rig) -> dict[str, str]:
    return {after: request.attempt_key for after, request in rig.ex.armed.items()}


def test_queue_heads_are_armed_in_chains_on_busy_slots(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(9)]
    rig.tick()
    k = [rig.key(job) for job in jobs]
    assert rig.ex.order == [k[0], k[1]]
    # FIFO over the slots, three deep each: 2 running + 6 armed; the ninth waits in the queue.
    assert armed_keys(rig) == {k[0]: k[2], k[1]: k[3], k[2]: k[4], k[3]: k[5], k[4]: k[6], k[5]: k[7]}
    request = rig.ex.armed[k[0]]
    assert request.env["AWS_BATCH_CE_NAME"] == "local"
    assert request.log_path.endswith(rig.engine.scheduler.log_stream_for(rig.engine.scheduler.jobs[jobs[2]], 1))
    detail = rig.job(jobs[2])
    assert detail["status"] == "RUNNABLE"  # armed jobs hold no capacity and show nothing yet
    assert "logStreamName" not in detail.get("container", {})


def test_armed_job_takes_over_the_slot_when_its_host_ends(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(3)]
    rig.tick()
    rig.clock.advance(1)
    rig.ex.finish(rig.key(jobs[0]))  # the fake starts jobs[2] at once, as the spawner does
    assert rig.ex.order[-1] == rig.key(jobs[2])
    rig.tick(1)
    assert rig.status(jobs[0]) == "SUCCEEDED"
    detail = rig.job(jobs[2])
    assert detail["status"] == "RUNNING"
    assert detail["container"]["logStreamName"] == rig.engine.scheduler.log_stream_for(
        rig.engine.scheduler.jobs[jobs[2]], 1)
    assert statuses(rig, jobs[2]) == ["RUNNABLE", "STARTING", "RUNNING"]
    assert rig.engine.scheduler.ledger.used_vcpus == 2  # jobs[1] and jobs[2]
    rig.ex.finish(rig.key(jobs[1]))
    rig.ex.finish(rig.key(jobs[2]))
    rig.tick()
    assert [rig.status(job) for job in jobs] == ["SUCCEEDED"] * 3
    assert rig.engine.scheduler.ledger.used_vcpus == 0


def test_start_order_stays_fifo(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(8)]
    rig.tick()
    while rig.ex.live:
        rig.ex.finish(sorted(rig.ex.live, key=rig.ex.order.index)[0])
        rig.tick(1)
    assert rig.ex.order == [rig.key(job) for job in jobs]
    assert all(rig.status(job) == "SUCCEEDED" for job in jobs)


def test_a_head_bigger_than_every_running_attempt_is_not_armed_and_blocks_the_queue(rig: Rig) -> None:
    rig.register("big", vcpus="2")
    first, second = rig.submit("a"), rig.submit("b")
    big, after = rig.submit("big", jd="big"), rig.submit("c")
    rig.tick()
    assert rig.ex.order == [rig.key(first), rig.key(second)]
    assert rig.ex.armed == {}  # FIFO: nothing behind the big head jumps it
    rig.ex.finish(rig.key(first))
    rig.tick()
    assert rig.status(big) == "RUNNABLE" and rig.status(after) == "RUNNABLE"
    rig.ex.finish(rig.key(second))
    rig.tick()
    assert rig.status(big) == "RUNNING"


def test_gpu_jobs_are_never_armed(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine", gpus=1)
    try:
        rig.register("gpu", gpus="1")
        jobs = [rig.submit(f"g{i}", jd="gpu") for i in range(3)]
        rig.tick()
        assert rig.ex.order == [rig.key(jobs[0])]
        assert rig.ex.armed == {}
    finally:
        rig.engine.stop()


def test_cancel_withdraws_an_armed_job_and_requeues_the_chain_behind_it(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(5)]
    rig.tick()
    k = [rig.key(job) for job in jobs]
    assert armed_keys(rig) == {k[0]: k[2], k[1]: k[3], k[2]: k[4]}
    rig.batch.cancel_job(jobId=jobs[2], reason="no longer wanted")
    rig.tick()
    detail = rig.job(jobs[2])
    assert detail["status"] == "FAILED" and detail["isCancelled"] is True
    assert detail["statusReason"] == "no longer wanted"
    assert rig.status(jobs[4]) == "RUNNABLE"  # dropped with the chain, back in its queue
    assert k[2] not in rig.ex.order
    rig.ex.finish(k[0])
    rig.ex.finish(k[1])
    rig.tick()
    for key in list(rig.ex.live):
        rig.ex.finish(key)
    rig.tick()
    # Each slot's chain starts in order; across slots, whichever frees first goes first.
    assert rig.ex.order[:2] == [k[0], k[1]] and sorted(rig.ex.order[2:]) == sorted([k[3], k[4]])
    assert [rig.status(jobs[i]) for i in (0, 1, 3, 4)] == ["SUCCEEDED"] * 4


def test_cancel_that_loses_the_race_with_the_start_is_a_no_op(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(3)]
    rig.tick()
    rig.ex.finish(rig.key(jobs[0]))  # jobs[2] starts before the engine reads the exit
    rig.batch.cancel_job(jobId=jobs[2], reason="too late")
    rig.tick()
    detail = rig.job(jobs[2])
    assert detail["status"] == "RUNNING"  # as AWS: CancelJob does not stop a job past RUNNABLE
    assert detail.get("isCancelled") is not True
    rig.ex.finish(rig.key(jobs[2]))
    rig.tick()
    assert rig.status(jobs[2]) == "SUCCEEDED"


def test_terminate_that_loses_the_race_stops_the_attempt(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(3)]
    rig.tick()
    rig.ex.finish(rig.key(jobs[0]))
    rig.batch.terminate_job(jobId=jobs[2], reason="stop it")
    rig.tick()
    assert (rig.key(jobs[2]), 1) in rig.ex.stops  # kill grace of the rig
    rig.ex.finish(rig.key(jobs[2]), 143)
    rig.tick()
    detail = rig.job(jobs[2])
    assert detail["status"] == "FAILED" and detail["statusReason"] == "stop it"


def test_terminate_of_an_armed_job_fails_it_without_running(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(3)]
    rig.tick()
    rig.batch.terminate_job(jobId=jobs[2], reason="stop it")
    rig.tick()
    detail = rig.job(jobs[2])
    assert detail["status"] == "FAILED" and detail["isTerminated"] is True
    assert rig.key(jobs[2]) not in rig.ex.order


def test_queue_update_withdraws_armed_jobs_and_keeps_their_order(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(4)]
    rig.tick()
    assert len(rig.ex.armed) == 2
    rig.batch.update_job_queue(jobQueue="default", priority=5)
    with rig.engine.lock:  # the withdrawals arrive as exits; take them without re-arming
        scheduler = rig.engine.scheduler
        while scheduler.exits:
            scheduler._end_attempt(scheduler.exits.popleft())
        assert scheduler.armed == {}
        assert [job for _, _, job in sorted(scheduler._runnable["default"])] == jobs[2:]
    rig.tick()
    for done in range(4):
        rig.ex.finish(rig.key(jobs[done]))
        rig.tick()
    assert rig.ex.order == [rig.key(job) for job in jobs]


def test_a_launch_the_executor_refuses_is_placed_the_ordinary_way(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(3)]
    rig.ex.refuse.add(rig.key(jobs[2]))
    rig.tick()
    assert rig.ex.armed == {}
    rig.ex.finish(rig.key(jobs[0]))
    rig.tick()
    assert rig.status(jobs[2]) == "RUNNING"  # launched by placement once a slot was free


def test_a_withdrawn_or_refused_launch_gives_its_spare_log_back(rig: Rig) -> None:
    from chalicelib.localbatch.execution.logpool import LogPool
    pool = rig.engine.scheduler.log_pool = LogPool(rig.engine.scheduler.log_path(""), target=8)
    pool.refill()
    jobs = [rig.submit(f"j{i}") for i in range(4)]
    rig.ex.refuse.add(rig.key(jobs[3]))
    rig.tick()
    assert rig.ex.armed[rig.key(jobs[0])].spare_log  # armed with a spare; jobs[3] was refused
    assert len(pool) == 8 - 3  # two launched, one armed; the refused one's spare came back
    rig.batch.cancel_job(jobId=jobs[2], reason="no")
    rig.tick()
    assert rig.status(jobs[2]) == "FAILED"
    assert len(pool) == 8 - 2  # ... and so did the withdrawn one's


def test_a_job_from_a_higher_priority_queue_is_not_held_back_by_armed_chains(rig: Rig) -> None:
    rig.batch.create_job_queue(jobQueueName="high", priority=10,
                               computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}])
    low = [rig.submit(f"low{i}") for i in range(6)]
    rig.tick()
    assert len(rig.ex.armed) == 4  # two running, four armed behind them
    urgent = rig.submit("urgent", queue="high")
    rig.tick()
    # The low jobs armed behind the running ones were withdrawn and armed again after it.
    assert rig.ex.armed[rig.key(low[0])].attempt_key == rig.key(urgent)
    assert [rig.status(job) for job in low[2:]] == ["RUNNABLE"] * 4
    rig.ex.finish(rig.key(low[0]))
    rig.tick()
    assert rig.status(urgent) == "RUNNING"  # the first slot to free went to the urgent job
    assert rig.ex.order[:3] == [rig.key(low[0]), rig.key(low[1]), rig.key(urgent)]


def test_a_high_priority_job_too_big_for_any_slot_does_not_withdraw_anything(rig: Rig) -> None:
    rig.register("wide", vcpus="2")
    rig.batch.create_job_queue(jobQueueName="high", priority=10,
                               computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}])
    [rig.submit(f"low{i}") for i in range(4)]
    rig.tick()
    armed = dict(rig.ex.armed)
    rig.submit("wide", jd="wide", queue="high")
    rig.tick()
    assert rig.ex.armed == armed  # it needs both slots at once: withdrawing would not help it
