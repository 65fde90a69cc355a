"""Scheduler semantics driven by tick() with a FakeClock and a FakeExecutor: no processes, no sleeps."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.localbatch.clock import FakeClock
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.execution.executor import ExitInfo, LaunchRequest
from chalicelib.localbatch.model import BLOCKED_CPU, BLOCKED_GPU, BLOCKED_MEMORY
from chalicelib.localbatch.scheduling.capacity import HostCapacity
from chalicelib.localbatch.scheduling.scheduler import EngineOptions


class FakeExecutor:
    """Records launches and stops; the test decides when and how each attempt ends."""

    def __init__(self) -> None:
        self.requests: dict[str, LaunchRequest] = {}
        self.order: list[str] = []
        self.live: set[str] = set()
        self.stops: list[tuple[str, float]] = []
        self.callback: Any = None
        self._pid = 1000

    def set_exit_callback(self, callback: Any) -> None:
        self.callback = callback

    def launch(self, request: LaunchRequest) -> int:
        assert request.attempt_key not in self.live, "an attempt key was launched twice"
        # Like the real executors: the attempt's log file exists before its process starts.
        Path(request.log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(request.log_path).touch()
        self.requests[request.attempt_key] = request
        self.order.append(request.attempt_key)
        self.live.add(request.attempt_key)
        self._pid += 1
        return self._pid

    def stop(self, attempt_key: str, grace_seconds: float) -> None:
        self.stops.append((attempt_key, grace_seconds))

    def running(self) -> list[str]:
        return sorted(self.live)

    def kill_orphans(self) -> list[str]:
        return []

    def close(self) -> None:
        pass

    def finish(self, key: str, code: int | None = 0, reason: str | None = None, started: bool = True) -> None:
        assert key in self.live, f"{key} is not running"
        self.live.discard(key)
        self.callback(ExitInfo(key, code, reason, started))


@dataclass
class Rig:
    engine: Engine
    ex: FakeExecutor
    clock: FakeClock
    batch: Any = field(init=False)

    def __post_init__(self) -> None:
        self.batch = self.engine.client()

    def tick(self, times: int = 3) -> None:
        for _ in range(times):
            with self.engine.lock:
                self.engine.scheduler.tick()
                # The engine loop flushes pending changes shortly after a tick; the fake clock
                # does not move on its own, so flush here.
                self.engine.scheduler.commit()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.batch.describe_jobs(jobs=[job_id])["jobs"][0]

    def status(self, job_id: str) -> str:
        return self.job(job_id)["status"]

    def register(self, name: str = "jd", vcpus: str = "1", memory: str = "64", gpus: str | None = None,
                 **extra: Any) -> str:
        reqs = [{"type": "VCPU", "value": vcpus}, {"type": "MEMORY", "value": memory}]
        if gpus:
            reqs.append({"type": "GPU", "value": gpus})
        self.batch.register_job_definition(
            jobDefinitionName=name, type="container",
            containerProperties={"image": "busybox", "command": ["true"], "resourceRequirements": reqs}, **extra)
        return name

    def submit(self, name: str = "j", jd: str = "jd", queue: str = "default", **kwargs: Any) -> str:
        return self.batch.submit_job(jobName=name, jobQueue=queue, jobDefinition=jd, **kwargs)["jobId"]

    def key(self, job_id: str, attempt: int = 1) -> str:
        return f"{job_id}#{attempt}"

    def events(self) -> list[dict[str, Any]]:
        return self.engine.read_events(0, 100000)[0]


def make_rig(path: Path, **host: Any) -> Rig:
    capacity = HostCapacity(**{"vcpus": 2, "memory_mib": 4096, "gpus": 0, **host})
    engine = Engine(path, host=capacity, executor=FakeExecutor(), clock=FakeClock(),
                    options=EngineOptions(kill_grace_seconds=1, seed=7))
    engine.scheduler.launcher = None  # launch inline, inside tick()
    return Rig(engine, engine.executor, engine.scheduler.clock)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    yield rig
    rig.engine.stop()


@pytest.fixture
def gpu_rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path / "engine", gpus=2)
    rig.register()
    yield rig
    rig.engine.stop()


# -- lifecycle, FIFO, placement ------------------------------------------------------------------

def test_job_runs_and_succeeds(rig: Rig) -> None:
    job = rig.submit()
    assert rig.status(job) == "SUBMITTED"
    rig.tick()
    assert rig.status(job) == "RUNNING"
    request = rig.ex.requests[rig.key(job)]
    assert request.env["AWS_BATCH_JOB_ID"] == job
    assert request.env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert request.env["AWS_BATCH_JQ_NAME"] == "default"
    assert request.env["AWS_BATCH_CE_NAME"] == "local"
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in request.env
    rig.clock.advance(2)
    rig.ex.finish(rig.key(job), 0)
    rig.tick()
    detail = rig.job(job)
    assert detail["status"] == "SUCCEEDED"
    assert detail["statusReason"] == "Essential container in task exited"
    assert detail["container"]["exitCode"] == 0
    assert len(detail["attempts"]) == 1
    assert detail["stoppedAt"] - detail["startedAt"] == 2000
    statuses = [e["detail"]["status"] for e in rig.events() if e["detail"].get("jobId") == job]
    assert statuses == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]  # no event for SUBMITTED


def test_fifo_within_a_queue(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(5)]
    rig.tick()
    assert rig.ex.order == [rig.key(jobs[0]), rig.key(jobs[1])]  # 2 vCPUs, 1 each
    for done, expected_next in ((0, 2), (1, 3)):
        rig.ex.finish(rig.key(jobs[done]))
        rig.tick()
        assert rig.ex.order[-1] == rig.key(jobs[expected_next])
    assert rig.status(jobs[4]) == "RUNNABLE"


def test_queue_priority_across_queues(rig: Rig) -> None:
    rig.batch.create_job_queue(jobQueueName="high", priority=10,
                               computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}])
    low = [rig.submit("low", queue="default") for _ in range(2)]
    high = [rig.submit("high", queue="high") for _ in range(2)]
    rig.tick()
    assert set(rig.ex.order) == {rig.key(j) for j in high}
    assert all(rig.status(j) == "RUNNABLE" for j in low)


def test_first_compute_environment_with_room(rig: Rig) -> None:
    for name in ("ce-a", "ce-b"):
        rig.batch.create_compute_environment(computeEnvironmentName=name, type="MANAGED",
                                             computeResources={"type": "EC2", "maxvCpus": 1, "subnets": []})
    rig.batch.create_job_queue(jobQueueName="q2", priority=1, computeEnvironmentOrder=[
        {"order": 2, "computeEnvironment": "ce-b"}, {"order": 1, "computeEnvironment": "ce-a"}])
    first, second, third = (rig.submit(f"j{i}", queue="q2") for i in range(3))
    rig.tick()
    assert rig.ex.requests[rig.key(first)].env["AWS_BATCH_CE_NAME"] == "ce-a"
    assert rig.ex.requests[rig.key(second)].env["AWS_BATCH_CE_NAME"] == "ce-b"
    assert rig.status(third) == "RUNNABLE"  # both CEs full (maxvCpus 1 each)
    rig.ex.finish(rig.key(second))
    rig.tick()
    assert rig.ex.requests[rig.key(third)].env["AWS_BATCH_CE_NAME"] == "ce-b"


def test_vcpu_and_memory_accounting(rig: Rig) -> None:
    rig.register("big-mem", vcpus="1", memory="3000")
    a = rig.submit("a", jd="big-mem")
    b = rig.submit("b", jd="big-mem")  # 6000 MiB > 4096 host: waits although a vCPU is free
    rig.tick()
    assert rig.status(a) == "RUNNING" and rig.status(b) == "RUNNABLE"
    assert "statusReason" not in rig.job(b)  # it fits later: not a misconfiguration
    rig.ex.finish(rig.key(a))
    rig.tick()
    assert rig.status(b) == "RUNNING"
    rig.register("two", vcpus="2")
    c = rig.submit("c", jd="two")
    rig.tick()
    assert rig.status(c) == "RUNNABLE"
    rig.ex.finish(rig.key(b))
    rig.tick()
    assert rig.status(c) == "RUNNING"


def test_gpu_accounting_and_cuda_visible_devices(gpu_rig: Rig) -> None:
    rig = gpu_rig
    rig.register("gpu1", gpus="1")
    a, b, c = (rig.submit(f"g{i}", jd="gpu1") for i in range(3))
    plain = rig.submit("plain")
    rig.tick()
    seen = {rig.ex.requests[rig.key(j)].env["CUDA_VISIBLE_DEVICES"] for j in (a, b)}
    assert seen == {"0", "1"}
    assert rig.status(c) == "RUNNABLE"
    assert rig.status(plain) == "RUNNABLE"  # behind c in FIFO order
    freed = rig.ex.requests[rig.key(a)].env["CUDA_VISIBLE_DEVICES"]
    rig.ex.finish(rig.key(a))
    rig.tick()
    assert rig.ex.requests[rig.key(c)].env["CUDA_VISIBLE_DEVICES"] == freed
    assert rig.ex.requests[rig.key(c)].gpu_ids == (int(freed),)


@pytest.mark.parametrize(("reqs", "reason"), [
    ({"vcpus": "3"}, BLOCKED_CPU),
    ({"memory": "5000"}, BLOCKED_MEMORY),
    ({"gpus": "1"}, BLOCKED_GPU),
])
def test_job_too_big_for_every_environment_blocks_the_queue(rig: Rig, reqs: dict[str, str], reason: str) -> None:
    rig.register("huge", **reqs)
    huge = rig.submit("huge", jd="huge")
    behind = rig.submit("behind")
    rig.tick()
    detail = rig.job(huge)
    assert detail["status"] == "RUNNABLE"
    assert detail["statusReason"] == reason
    assert detail["statusReason"].startswith("MISCONFIGURATION:")
    assert rig.status(behind) == "RUNNABLE"  # FIFO: the blocked head holds back the queue
    assert rig.ex.order == []
    blocked = [e for e in rig.events() if e["detail-type"] == "Batch Job Queue Blocked"]
    assert len(blocked) == 1 and blocked[0]["detail"]["statusReason"] == reason
    # Unblocking: terminate the head, and the job behind it runs.
    rig.batch.terminate_job(jobId=huge, reason="too big")
    rig.tick()
    assert rig.status(behind) == "RUNNING"


# -- retries and timeouts ------------------------------------------------------------------------

def test_retry_on_exit_code_appends_attempts(rig: Rig) -> None:
    job = rig.submit(retryStrategy={"attempts": 3, "evaluateOnExit": [
        {"action": "retry", "onExitCode": "3"}, {"action": "EXIT", "onExitCode": "*"}]})
    rig.tick()
    rig.ex.finish(rig.key(job, 1), 3)
    rig.tick()
    assert rig.status(job) == "RUNNING"
    assert rig.ex.requests[rig.key(job, 2)].env["AWS_BATCH_JOB_ATTEMPT"] == "2"
    rig.ex.finish(rig.key(job, 2), 4)  # EXIT rule
    rig.tick()
    detail = rig.job(job)
    assert detail["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in detail["attempts"]] == [3, 4]
    assert detail["container"]["exitCode"] == 4


def test_no_rule_matches_retries_until_attempts_run_out(rig: Rig) -> None:
    job = rig.submit(retryStrategy={"attempts": 2})
    rig.tick()
    rig.ex.finish(rig.key(job, 1), 1)
    rig.tick()
    rig.ex.finish(rig.key(job, 2), 1)
    rig.tick()
    assert rig.status(job) == "FAILED"
    assert len(rig.job(job)["attempts"]) == 2


def test_timeout_stops_the_attempt_and_is_not_retried(rig: Rig) -> None:
    job = rig.submit(timeout={"attemptDurationSeconds": 60}, retryStrategy={"attempts": 3})
    rig.tick()
    rig.clock.advance(59)
    rig.tick()
    assert rig.ex.stops == []
    rig.clock.advance(2)
    rig.tick()
    assert rig.ex.stops == [(rig.key(job), 1)]  # SIGTERM, SIGKILL after the grace
    rig.ex.finish(rig.key(job), 137)
    rig.tick()
    detail = rig.job(job)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(detail["attempts"]) == 1
    assert detail["attempts"][0]["statusReason"] == "Job attempt duration exceeded timeout"


def test_failed_start_uses_task_failed_to_start(rig: Rig) -> None:
    job = rig.submit()
    rig.tick()
    rig.ex.finish(rig.key(job), None, "CannotStartContainerError: no such file", started=False)
    rig.tick()
    detail = rig.job(job)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == "Task failed to start"
    assert detail["container"]["reason"].startswith("CannotStartContainerError")


def test_spot_reclaim_ends_attempts_as_lost_hosts_and_retries(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "spot")
    try:
        rig.register()
        rig.batch.create_compute_environment(
            computeEnvironmentName="spot", type="MANAGED", tags={"conveyor:reclaim-rate": "1.0"},
            computeResources={"type": "SPOT", "maxvCpus": 2, "subnets": []})
        rig.batch.create_job_queue(jobQueueName="spotq", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "spot"}])
        job = rig.submit(queue="spotq", retryStrategy={"attempts": 2, "evaluateOnExit": [
            {"action": "RETRY", "onStatusReason": "Host EC2*"}, {"action": "EXIT", "onReason": "*"}]})
        rig.tick()
        for attempt in (1, 2):
            rig.clock.advance(3)  # past the reclaim window
            rig.tick()
            key = rig.key(job, attempt)
            assert (key, 0.0) in rig.ex.stops  # a lost host kills at once
            rig.ex.finish(key, None)
            rig.tick()
        detail = rig.job(job)
        assert detail["status"] == "FAILED"
        assert len(detail["attempts"]) == 2
        for attempt in detail["attempts"]:
            assert attempt["statusReason"].startswith("Host EC2 (instance i-")
            assert attempt["statusReason"].endswith(") terminated.")
            assert "exitCode" not in attempt["container"]
    finally:
        rig.engine.stop()


# -- dependencies and arrays ---------------------------------------------------------------------

def test_dependency_failure_fails_dependents(rig: Rig) -> None:
    a = rig.submit("a")
    b = rig.submit("b", dependsOn=[{"jobId": a}])
    c = rig.submit("c", dependsOn=[{"jobId": b}])
    rig.tick()
    assert rig.status(b) == "PENDING" and rig.status(c) == "PENDING"
    rig.ex.finish(rig.key(a), 1)
    rig.tick()
    for job in (b, c):
        detail = rig.job(job)
        assert detail["status"] == "FAILED"
        assert detail["statusReason"] == "Dependent Job failed"
        assert detail["attempts"] == []
    late = rig.submit("late", dependsOn=[{"jobId": a}])  # depends on an already failed job
    rig.tick()
    assert rig.job(late)["statusReason"] == "Dependent Job failed"


def test_dependency_success_releases_dependents(rig: Rig) -> None:
    a = rig.submit("a")
    b = rig.submit("b", dependsOn=[{"jobId": a}])
    rig.tick()
    rig.ex.finish(rig.key(a))
    rig.tick()
    assert rig.status(b) == "RUNNING"


def test_array_children_index_and_parent_summary(rig: Rig) -> None:
    parent = rig.submit("arr", arrayProperties={"size": 3})
    rig.tick()
    detail = rig.job(parent)
    assert detail["status"] == "PENDING"
    assert detail["arrayProperties"]["size"] == 3
    assert set(detail["arrayProperties"]["statusSummary"]) == {
        "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"}
    assert detail["arrayProperties"]["statusSummary"]["RUNNING"] == 2
    assert detail["arrayProperties"]["statusSummary"]["RUNNABLE"] == 1
    indexes = sorted(r.env["AWS_BATCH_JOB_ARRAY_INDEX"] for r in rig.ex.requests.values())
    assert indexes == ["0", "1"]
    assert rig.job(f"{parent}:2")["arrayProperties"] == {"index": 2}
    for i in range(3):
        rig.tick()
        rig.ex.finish(rig.key(f"{parent}:{i}"), 0)
        rig.tick()
    detail = rig.job(parent)
    assert detail["status"] == "SUCCEEDED"
    assert detail["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3


def test_one_failed_child_fails_the_parent_and_its_dependents(rig: Rig) -> None:
    parent = rig.submit("arr", arrayProperties={"size": 2})
    after = rig.submit("after", dependsOn=[{"jobId": parent}])
    rig.tick()
    rig.ex.finish(rig.key(f"{parent}:0"), 0)
    rig.tick()
    assert rig.status(after) == "PENDING"
    rig.ex.finish(rig.key(f"{parent}:1"), 1)
    rig.tick()
    assert rig.status(parent) == "FAILED"
    assert rig.job(after)["statusReason"] == "Dependent Job failed"


def test_n_to_n_dependency(rig: Rig) -> None:
    a = rig.submit("a", arrayProperties={"size": 2})
    b = rig.submit("b", arrayProperties={"size": 2}, dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    rig.tick()
    assert rig.status(f"{b}:0") == "PENDING"
    rig.ex.finish(rig.key(f"{a}:1"), 1)
    rig.tick()
    assert rig.job(f"{b}:1")["statusReason"] == "Dependent Job failed"
    assert rig.status(f"{b}:0") == "PENDING"
    rig.ex.finish(rig.key(f"{a}:0"), 0)
    rig.tick()
    assert rig.status(f"{b}:0") == "RUNNING"
    rig.ex.finish(rig.key(f"{b}:0"), 0)
    rig.tick()
    assert rig.status(a) == "FAILED" and rig.status(b) == "FAILED"


def test_sequential_array_runs_in_order_and_failure_cascades(rig: Rig) -> None:
    parent = rig.submit("seq", arrayProperties={"size": 4}, dependsOn=[{"type": "SEQUENTIAL"}])
    rig.tick()
    assert rig.ex.order == [rig.key(f"{parent}:0")]
    rig.ex.finish(rig.key(f"{parent}:0"), 0)
    rig.tick()
    assert rig.ex.order[-1] == rig.key(f"{parent}:1")
    rig.ex.finish(rig.key(f"{parent}:1"), 2)
    rig.tick()
    for i in (2, 3):
        assert rig.job(f"{parent}:{i}")["statusReason"] == "Dependent Job failed"
    assert rig.status(parent) == "FAILED"
    assert len(rig.ex.order) == 2


def test_long_sequential_chain_failure_does_not_recurse(rig: Rig) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # far below the chain length: any recursion per link would overflow
    try:
        parent = rig.submit("long", arrayProperties={"size": 10_000}, dependsOn=[{"type": "SEQUENTIAL"}])
        while rig.engine.scheduler.admissions:  # big arrays are spawned over several ticks
            rig.tick(1)
        rig.ex.finish(rig.key(f"{parent}:0"), 1)
        rig.tick(1)
    finally:
        sys.setrecursionlimit(limit)
    detail = rig.job(parent)
    assert detail["status"] == "FAILED"
    assert detail["arrayProperties"]["statusSummary"]["FAILED"] == 10_000
    assert rig.job(f"{parent}:9999")["statusReason"] == "Dependent Job failed"


def test_child_id_dependency(rig: Rig) -> None:
    arr = rig.submit("arr", arrayProperties={"size": 2})
    for bad in (f"{arr}:2", f"{arr}:01", f"{arr}:-1"):
        with pytest.raises(ClientError) as info:
            rig.submit("bad", dependsOn=[{"jobId": bad}])
        assert "dependsOn[0].jobId" in info.value.response["Error"]["Message"]
    one = rig.submit("one", dependsOn=[{"jobId": f"{arr}:1"}])
    rig.tick()
    rig.ex.finish(rig.key(f"{arr}:1"), 0)
    rig.tick()
    assert rig.status(one) == "RUNNING"
    assert rig.status(f"{arr}:0") == "RUNNING"


# -- CancelJob versus TerminateJob ---------------------------------------------------------------

def test_cancel_and_terminate_runnable_and_submitted(rig: Rig) -> None:
    submitted = rig.submit("s")
    rig.batch.cancel_job(jobId=submitted, reason="no longer needed")
    detail = rig.job(submitted)
    assert (detail["status"], detail["statusReason"], detail["isCancelled"]) == ("FAILED", "no longer needed", True)
    blockers = [rig.submit(f"b{i}") for i in range(2)]
    runnable = [rig.submit("r1"), rig.submit("r2")]
    rig.tick()
    assert all(rig.status(j) == "RUNNABLE" for j in runnable)
    rig.batch.cancel_job(jobId=runnable[0], reason="cancel it")
    rig.batch.terminate_job(jobId=runnable[1], reason="terminate it")
    assert rig.job(runnable[0])["isCancelled"] is True
    detail = rig.job(runnable[1])
    assert (detail["status"], detail["statusReason"], detail["isTerminated"]) == ("FAILED", "terminate it", True)
    assert detail["attempts"] == []
    assert all(rig.status(b) == "RUNNING" for b in blockers)


def test_cancel_pending_fails_only_after_dependencies_complete(rig: Rig) -> None:
    a = rig.submit("a")
    b = rig.submit("b", dependsOn=[{"jobId": a}])
    rig.tick()
    rig.batch.cancel_job(jobId=b, reason="cancel pending")
    rig.tick()
    assert rig.status(b) == "PENDING"
    rig.ex.finish(rig.key(a), 0)
    rig.tick()
    detail = rig.job(b)
    assert (detail["status"], detail["statusReason"], detail["isCancelled"]) == ("FAILED", "cancel pending", True)
    assert rig.key(b) not in rig.ex.requests  # never ran


def test_terminate_pending_fails_at_once(rig: Rig) -> None:
    a = rig.submit("a")
    b = rig.submit("b", dependsOn=[{"jobId": a}])
    rig.tick()
    rig.batch.terminate_job(jobId=b, reason="stop")
    assert rig.job(b)["status"] == "FAILED"
    assert rig.job(b)["isTerminated"] is True


def test_cancel_running_is_a_no_op_terminate_stops_it(rig: Rig) -> None:
    job = rig.submit(retryStrategy={"attempts": 3})
    rig.tick()
    rig.batch.cancel_job(jobId=job, reason="ignored")
    rig.tick()
    assert rig.status(job) == "RUNNING" and rig.ex.stops == []
    rig.batch.terminate_job(jobId=job, reason="operator stop")
    assert rig.ex.stops == [(rig.key(job), 1)]
    rig.ex.finish(rig.key(job), None)
    rig.tick()
    detail = rig.job(job)
    assert (detail["status"], detail["statusReason"], detail["isTerminated"]) == ("FAILED", "operator stop", True)
    assert len(detail["attempts"]) == 1  # never retried


def test_terminate_starting_job_stops_it_once_launched(rig: Rig) -> None:
    held: list[LaunchRequest] = []
    rig.engine.scheduler.launcher = held.extend  # launches wait: the job stays STARTING
    job = rig.submit()
    rig.tick()
    assert rig.status(job) == "STARTING"
    rig.batch.cancel_job(jobId=job, reason="no-op")
    assert rig.status(job) == "STARTING"
    rig.batch.terminate_job(jobId=job, reason="stop starting")
    scheduler = rig.engine.scheduler
    for request in held:
        scheduler.launched.append((request.attempt_key, scheduler.launch_one(request), scheduler.now()))
    rig.tick()
    assert (rig.key(job), 1) in rig.ex.stops
    rig.ex.finish(rig.key(job), None)
    rig.tick()
    assert rig.job(job)["statusReason"] == "stop starting"
    assert rig.job(job)["isTerminated"] is True


def test_cancel_and_terminate_terminal_jobs_are_no_ops(rig: Rig) -> None:
    job = rig.submit()
    rig.tick()
    rig.ex.finish(rig.key(job), 0)
    rig.tick()
    rig.batch.cancel_job(jobId=job, reason="x")
    rig.batch.terminate_job(jobId=job, reason="y")
    detail = rig.job(job)
    assert (detail["status"], detail["isCancelled"], detail["isTerminated"]) == ("SUCCEEDED", False, False)


def test_terminate_array_parent_applies_to_children(rig: Rig) -> None:
    parent = rig.submit("arr", arrayProperties={"size": 3})
    rig.tick()
    rig.batch.terminate_job(jobId=parent, reason="all of it")
    assert rig.status(f"{parent}:2") == "FAILED"  # was RUNNABLE
    for i in (0, 1):
        rig.ex.finish(rig.key(f"{parent}:{i}"), None)
    rig.tick()
    assert rig.status(parent) == "FAILED"
    assert all(rig.job(f"{parent}:{i}")["isTerminated"] for i in range(3))


def test_unknown_job_is_a_client_error(rig: Rig) -> None:
    with pytest.raises(ClientError) as info:
        rig.batch.cancel_job(jobId="nope", reason="x")
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert "jobId" in info.value.response["Error"]["Message"]


# -- events --------------------------------------------------------------------------------------

def test_event_detail_matches_describe_jobs(rig: Rig) -> None:
    job = rig.submit()
    rig.tick()
    rig.ex.finish(rig.key(job), 0)
    rig.tick()
    last = [e for e in rig.events() if e["detail"].get("jobId") == job][-1]
    assert last["detail-type"] == "Batch Job State Change"
    assert last["source"] == "aws.batch"
    assert last["resources"] == [last["detail"]["jobArn"]]
    assert last["detail"] == rig.job(job)


def test_terminating_an_array_while_it_is_still_spawning(rig: Rig) -> None:
    parent = rig.submit("big", arrayProperties={"size": 10_000})
    rig.tick(1)
    assert rig.engine.scheduler.admissions  # still spawning children
    rig.batch.terminate_job(jobId=parent, reason="abort")
    while rig.engine.scheduler.admissions:
        rig.tick(1)
    for key in list(rig.ex.live):
        rig.ex.finish(key, None)
    rig.tick()
    detail = rig.job(parent)
    assert detail["status"] == "FAILED"
    assert detail["arrayProperties"]["statusSummary"]["FAILED"] == 10_000
    assert rig.job(f"{parent}:9999")["isTerminated"] is True
    assert len(rig.ex.order) <= 2


def test_restart_while_an_array_is_half_spawned_finishes_spawning(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    parent = rig.submit("big", arrayProperties={"size": 5000})
    rig.tick(1)  # some children exist and are committed, the rest are not created yet
    assert rig.engine.scheduler.admissions
    running = sorted(rig.ex.live)
    rig.engine.stop()

    again = make_rig(tmp_path / "engine")
    try:
        again.engine.start()  # recovers the attempts the first engine had running
        for _ in range(10):
            with again.engine.lock:
                again.engine.scheduler.tick()
        summary = again.job(parent)["arrayProperties"]["statusSummary"]
        assert sum(summary.values()) == 5000
        assert again.status(f"{parent}:4999") in ("RUNNABLE", "RUNNING")
        for key in running:  # ended as lost hosts, not retried (no strategy)
            assert again.job(key.split("#")[0])["statusReason"].startswith("Host EC2")
    finally:
        again.engine.stop()


def test_array_depending_on_a_job(rig: Rig) -> None:
    gate = rig.submit("gate")
    arr = rig.submit("arr", arrayProperties={"size": 2}, dependsOn=[{"jobId": gate}])
    failing_gate = rig.submit("gate2")
    doomed = rig.submit("doomed", arrayProperties={"size": 2}, dependsOn=[{"jobId": failing_gate}])
    rig.tick()
    assert rig.status(arr) == "PENDING" and rig.status(f"{arr}:0") == "PENDING"
    rig.ex.finish(rig.key(failing_gate), 1)
    rig.tick()
    assert rig.status(doomed) == "FAILED"
    assert rig.job(f"{doomed}:1")["statusReason"] == "Dependent Job failed"
    rig.ex.finish(rig.key(gate), 0)
    rig.tick()
    assert rig.status(f"{arr}:0") == "RUNNING" and rig.status(f"{arr}:1") == "RUNNING"


def test_cancel_pending_array_parent_cancels_children_once_dependencies_complete(rig: Rig) -> None:
    gate = rig.submit("gate")
    arr = rig.submit("arr", arrayProperties={"size": 2}, dependsOn=[{"jobId": gate}])
    rig.tick()
    rig.batch.cancel_job(jobId=arr, reason="cancel the array")
    rig.tick()
    assert rig.status(arr) == "PENDING"
    rig.ex.finish(rig.key(gate), 0)
    rig.tick()
    detail = rig.job(arr)
    assert detail["status"] == "FAILED"
    for i in range(2):
        child = rig.job(f"{arr}:{i}")
        assert (child["status"], child["statusReason"], child["isCancelled"]) == ("FAILED", "cancel the array", True)
    assert rig.key(f"{arr}:0") not in rig.ex.requests


def test_cancel_one_child_fails_only_it_and_the_parent(rig: Rig) -> None:
    rig.register("wide", vcpus="2")
    blocker = rig.submit("blocker", jd="wide")
    arr = rig.submit("arr", arrayProperties={"size": 3})
    rig.tick()
    rig.batch.cancel_job(jobId=f"{arr}:1", reason="just this one")
    rig.ex.finish(rig.key(blocker), 0)
    rig.tick()
    for i in (0, 2):
        rig.ex.finish(rig.key(f"{arr}:{i}"), 0)
    rig.tick()
    assert [rig.status(f"{arr}:{i}") for i in range(3)] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    assert rig.status(arr) == "FAILED"


def test_timeout_applies_to_each_array_child(rig: Rig) -> None:
    arr = rig.submit("arr", arrayProperties={"size": 2}, timeout={"attemptDurationSeconds": 60})
    rig.tick()
    rig.clock.advance(61)
    rig.tick()
    assert sorted(key for key, _ in rig.ex.stops) == sorted(rig.key(f"{arr}:{i}") for i in range(2))
    for i in range(2):
        rig.ex.finish(rig.key(f"{arr}:{i}"), None)
    rig.tick()
    assert rig.job(f"{arr}:0")["statusReason"] == "Job attempt duration exceeded timeout"
    assert rig.status(arr) == "FAILED"  # the parent itself never times out, its children did


def test_retried_attempt_gets_a_fresh_timeout(rig: Rig) -> None:
    job = rig.submit(timeout={"attemptDurationSeconds": 60}, retryStrategy={"attempts": 2})
    rig.tick()
    rig.clock.advance(50)
    rig.ex.finish(rig.key(job, 1), 1)
    rig.tick()
    rig.clock.advance(50)  # 100 s after the first start, 50 s into the second attempt
    rig.tick()
    assert rig.ex.stops == []
    rig.clock.advance(11)
    rig.tick()
    assert rig.ex.stops == [(rig.key(job, 2), 1)]


def test_disabled_environment_takes_no_new_jobs(rig: Rig) -> None:
    running = rig.submit("running")
    rig.tick()
    rig.batch.update_compute_environment(computeEnvironment="local", state="DISABLED")
    waiting = rig.submit("waiting")
    rig.tick()
    assert rig.status(waiting) == "RUNNABLE"
    assert rig.status(running) == "RUNNING"  # running jobs continue
    rig.ex.finish(rig.key(running), 0)
    rig.tick()
    assert rig.status(running) == "SUCCEEDED" and rig.status(waiting) == "RUNNABLE"
    rig.batch.update_compute_environment(computeEnvironment="local", state="ENABLED")
    rig.tick()
    detail = rig.job(waiting)
    assert detail["status"] == "RUNNING" and "statusReason" not in detail


def test_lowering_max_vcpus_limits_placement(rig: Rig) -> None:
    rig.batch.update_compute_environment(computeEnvironment="local", computeResources={"maxvCpus": 1})
    jobs = [rig.submit(f"j{i}") for i in range(2)]
    rig.tick()
    assert [rig.status(j) for j in jobs] == ["RUNNING", "RUNNABLE"]


def test_clean_stop_keeps_every_change(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    job = rig.submit()
    rig.tick()
    rig.ex.finish(rig.key(job), 0)
    with rig.engine.lock:
        rig.engine.scheduler.tick()  # no explicit flush: stop() must write what the tick changed
    assert rig.status(job) == "SUCCEEDED"
    rig.engine.stop()
    again = make_rig(tmp_path / "engine")
    try:
        assert again.status(job) == "SUCCEEDED"
        assert [e["detail"]["status"] for e in again.events() if e["detail"]["jobId"] == job][-1] == "SUCCEEDED"
    finally:
        again.engine.stop()


def test_restart_keeps_array_details_identical(tmp_path: Path) -> None:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    parent = rig.submit("arr", arrayProperties={"size": 2})
    rig.tick()
    for i in range(2):
        rig.ex.finish(rig.key(f"{parent}:{i}"), 0)
    rig.tick()
    before = rig.job(parent)
    assert before["status"] == "SUCCEEDED" and "statusSummaryLastUpdatedAt" in before["arrayProperties"]
    rig.engine.stop()
    again = make_rig(tmp_path / "engine")
    try:
        assert again.job(parent) == before
        last = [e for e in again.events() if e["detail"]["jobId"] == parent][-1]
        assert last["detail"] == before
    finally:
        again.engine.stop()


def test_crash_after_an_unrecorded_run_does_not_rerun_it_as_attempt_1(tmp_path: Path) -> None:
    """Write-ahead: a launched attempt must be on disk before its process exists (reference: durability).

    The engine is abandoned without stop() (as a kill -9 would), right after a tick that
    launched an attempt which then finished. On restart the job must not silently run
    again as a first attempt.
    """
    rig = make_rig(tmp_path / "engine")
    rig.register()
    job = rig.submit()
    scheduler = rig.engine.scheduler
    with rig.engine.lock:
        scheduler.tick(scheduler.options.group_commit_ms)  # as the engine loop ticks; launches the attempt
    assert rig.key(job) in rig.ex.live
    rig.ex.finish(rig.key(job), 0)
    with rig.engine.lock:
        scheduler.tick(scheduler.options.group_commit_ms)  # SUCCEEDED in memory
    assert scheduler.jobs[job].status.value == "SUCCEEDED"  # not through the API: a call would commit
    # kill -9: no stop(), nothing more is written; the kernel drops the dead engine's folder lock.
    # A new engine opens the same data dir.
    rig.engine.folder_lock.release()
    again = make_rig(tmp_path / "engine")
    try:
        again.engine.start()
        again.tick()
        relaunched_as_first = again.key(job, 1) in again.ex.requests
        assert not relaunched_as_first, "the job ran again as attempt 1 with no record of the first run"
    finally:
        again.engine.stop()


def test_fractional_vcpus_pack_the_host(rig: Rig) -> None:
    rig.register("half", vcpus="0.5")
    jobs = [rig.submit(f"h{i}", jd="half") for i in range(5)]
    rig.tick()
    assert [rig.status(j) for j in jobs] == ["RUNNING"] * 4 + ["RUNNABLE"]
    rig.ex.finish(rig.key(jobs[0]), 0)
    rig.tick()
    assert rig.status(jobs[4]) == "RUNNING"


def test_disabled_queue_refuses_new_jobs_but_runs_queued_ones(rig: Rig) -> None:
    jobs = [rig.submit(f"j{i}") for i in range(3)]
    rig.tick()
    rig.batch.update_job_queue(jobQueue="default", state="DISABLED")
    with pytest.raises(ClientError) as info:
        rig.submit("late")
    assert "DISABLED" in info.value.response["Error"]["Message"]
    for job in jobs[:2]:
        rig.ex.finish(rig.key(job), 0)
    rig.tick()
    assert rig.status(jobs[2]) == "RUNNING"


def test_a_dependent_starts_only_once_the_end_that_released_it_is_committed(rig: Rig) -> None:
    """Exits are handled without a commit (the group commit comes later); a dependent released by
    one must still not launch before its dependency's SUCCEEDED is in SQLite, or a kill -9 in
    between would bring the dependency back to run again after its dependent ran."""
    import sqlite3

    a = rig.submit("a")
    b = rig.submit("b", dependsOn=[{"jobId": a}])
    rig.tick()
    committed_at_launch: dict[str, str] = {}
    launch = rig.ex.launch

    def launch_and_look(request: LaunchRequest) -> int:
        with sqlite3.connect(rig.engine.store.path) as db:  # what a restarted engine would read
            committed_at_launch[request.attempt_key] = db.execute(
                "SELECT status FROM jobs WHERE job_id = ?", (a,)).fetchone()[0]
        return launch(request)

    rig.ex.launch = launch_and_look  # type: ignore[method-assign]
    rig.engine._started = True  # the exit path schedules at once, as in a running engine
    rig.ex.finish(rig.key(a))  # the exit path: tick without a group commit
    assert rig.key(b) in rig.ex.requests, "the dependent was not released by its dependency's end"
    assert committed_at_launch[rig.key(b)] == "SUCCEEDED"


def _status_in_store(rig: Rig, job_id: str) -> str:
    import sqlite3

    with sqlite3.connect(rig.engine.store.path) as db:  # what a restarted engine would read
        return str(db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0])


def test_a_dependent_whose_release_is_committed_already_starts_without_another_commit(rig: Rig) -> None:
    """The commit that makes a release durable is made only when the dependent would otherwise
    start first: once the group commit has written it, starting the dependent writes nothing."""
    rig.register("wide", vcpus="2")
    a = rig.submit("a")
    rig.tick()
    wide = rig.submit("wide", jd="wide")  # the queue's head from now on: it waits for both vCPUs
    b = rig.submit("b", dependsOn=[{"jobId": a}])
    rig.tick()
    writes: list[int] = []
    write = rig.engine.store.write_changes

    def counting(rows: Any, events: Any) -> int:
        writes.append(len(rows))
        return write(rows, events)

    rig.engine.store.write_changes = counting  # type: ignore[method-assign]
    rig.engine._started = True  # the exit path schedules at once, as in a running engine
    rig.ex.finish(rig.key(a))  # releases b, which waits behind the wide job (started now)
    assert rig.key(wide) in rig.ex.live and rig.key(b) not in rig.ex.requests
    assert writes == [], "the exit path commits nothing itself"
    rig.engine.scheduler.commit()  # the engine loop's group commit: a's end and b's release
    assert writes and _status_in_store(rig, a) == "SUCCEEDED"
    writes.clear()
    rig.ex.finish(rig.key(wide))  # b starts on the exit path
    assert rig.key(b) in rig.ex.requests
    assert writes == [], "b's release was committed already: nothing to write before it starts"


def test_array_children_spawned_after_their_dependency_ended_uncommitted_wait_for_that_commit(rig: Rig) -> None:
    """An N_TO_N array whose children are spawned in the tick that ends their dependencies (the end
    still in the group-commit window): each child is RUNNABLE at once, and still starts only once
    the end it depends on is in SQLite."""
    a = rig.submit("a", arrayProperties={"size": 2})
    rig.tick()
    b = rig.submit("b", arrayProperties={"size": 2}, dependsOn=[{"jobId": a, "type": "N_TO_N"}])
    committed_at_launch: dict[str, str] = {}
    launch = rig.ex.launch

    def launch_and_look(request: LaunchRequest) -> int:
        committed_at_launch[request.attempt_key] = _status_in_store(rig, f"{a}:0")
        return launch(request)

    rig.ex.launch = launch_and_look  # type: ignore[method-assign]
    rig.engine._started = True
    rig.ex.finish(rig.key(f"{a}:0"))  # the exit path ends a:0, then spawns b's children
    assert rig.key(f"{b}:0") in rig.ex.requests
    assert committed_at_launch[rig.key(f"{b}:0")] == "SUCCEEDED"


def test_a_follower_of_one_job_does_not_sleep_through_a_commit_made_while_it_read(rig: Rig) -> None:
    """read_events(job_id=...): a commit landing between the follower's read and its wait could not
    know it waits; the follower must read again at once instead of sleeping until its deadline."""
    a = rig.submit("a")
    rig.tick()
    after = rig.engine.read_events(0, 1000)[1]
    store_read = rig.engine.store.read_events
    reads: list[int] = []

    def read_then_commit(after_: int, limit: int = 1000, job_id: str | None = None) -> Any:
        result = store_read(after_, limit, job_id)
        if not reads:  # a's end is committed just after the first read, before the follower waits
            rig.ex.finish(rig.key(a))
            rig.tick(1)
        reads.append(after_)
        return result

    rig.engine.store.read_events = read_then_commit  # type: ignore[method-assign]
    waits: list[bool] = []
    feed_wait = rig.engine._feed.wait_for

    def recording(predicate: Any, timeout: float | None = None) -> Any:
        waits.append(bool(predicate()))
        return feed_wait(predicate, timeout)

    rig.engine._feed.wait_for = recording  # type: ignore[method-assign]
    events, _ = rig.engine.read_events(after, 1000, wait_seconds=2, job_id=a)
    assert "SUCCEEDED" in [event["detail"]["status"] for event in events]
    assert waits == [True], "the follower went to sleep although the commit it waits for had landed"
