"""TerminateJob of real processes (SIGTERM, then SIGKILL), memory limits, GPU scheduling, timeouts' bounds."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import (
    JOBS,
    LiveEngine,
    pid_alive,
    register,
    wait_file,
)


def test_terminate_running_job_sends_sigterm(live: LiveEngine) -> None:
    jd = register(live.batch, "idle", ["sleep", "30"])
    job = live.submit("idle", jd, retryStrategy={"attempts": 3})
    wait_for_status(live.batch, job, "RUNNING")
    live.batch.terminate_job(jobId=job, reason="operator says stop")
    detail = wait_for_status(live.batch, job, "FAILED", deadline=20)
    assert detail["statusReason"] == "operator says stop"
    assert detail["isTerminated"] is True
    assert len(detail["attempts"]) == 1  # terminations are never retried


def test_terminate_kills_a_process_that_ignores_sigterm_after_the_grace(live: LiveEngine, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    jd = register(live.batch, "stubborn", ["python", str(JOBS / "ignore_term.py"), str(pid_file)])
    job = live.submit("stubborn", jd)
    wait_for_status(live.batch, job, "RUNNING")
    pid = int(wait_file(pid_file))
    wait_until(lambda: "ready" in live.engine.read_log(job), what="the job to install its handler")
    live.batch.terminate_job(jobId=job, reason="stop")
    wait_until(lambda: "got SIGTERM" in live.engine.read_log(job), what="SIGTERM to reach the job")
    detail = wait_for_status(live.batch, job, "FAILED", deadline=20)  # grace is 1 s, then SIGKILL
    assert detail["statusReason"] == "stop"
    assert not pid_alive(pid)


def test_memory_over_the_limit_ends_with_out_of_memory(live: LiveEngine) -> None:
    jd = register(live.batch, "hog", ["python", str(JOBS / "hog_memory.py"), "200"], memory="64")
    job = live.submit("hog", jd, retryStrategy={"attempts": 2, "evaluateOnExit": [
        {"action": "EXIT", "onReason": "OutOfMemoryError*"}]})
    detail = wait_for_status(live.batch, job, "FAILED", deadline=30)
    assert detail["container"]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert detail["attempts"][0]["container"]["reason"] == detail["container"]["reason"]
    assert len(detail["attempts"]) == 1  # the EXIT rule on the OOM reason matched


def test_gpu_jobs_get_distinct_devices_and_too_many_gpus_block(make_engine, tmp_path: Path) -> None:
    live = make_engine(gpus=2)
    seen = tmp_path / "gpus"
    seen.mkdir()
    # Each job records its devices, then waits until both are running, so they provably overlap.
    script = (f'echo "$CUDA_VISIBLE_DEVICES" > {seen}/$AWS_BATCH_JOB_ID; n=0; '
              f'while [ "$(ls {seen} | wc -l)" -lt 2 ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done')
    one = register(live.batch, "gpu1", ["sh", "-c", script], gpus="1")
    three = register(live.batch, "gpu3", ["true"], gpus="3")
    jobs = [live.submit(f"g{i}", one) for i in range(2)]
    for job in jobs:
        wait_for_status(live.batch, job, "SUCCEEDED")
    devices = sorted((seen / job).read_text().strip() for job in jobs)
    assert devices == ["0", "1"]
    big = live.submit("big", three)
    detail = wait_until(lambda: (d := live.batch.describe_jobs(jobs=[big])["jobs"][0]).get("statusReason") and d,
                        what="the blocked reason")
    assert detail["status"] == "RUNNABLE"
    assert detail["statusReason"].startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    assert "GPU" in detail["statusReason"]
    behind = live.submit("behind", register(live.batch, "plain", ["true"]))
    assert live.batch.describe_jobs(jobs=[behind])["jobs"][0]["status"] in ("SUBMITTED", "RUNNABLE")
    live.batch.cancel_job(jobId=big, reason="cannot fit")
    wait_for_status(live.batch, behind, "SUCCEEDED")


def test_spot_environment_with_reclaim_tag_loses_hosts(make_engine) -> None:
    live = make_engine(reclaim_window_seconds=0.3)
    live.batch.create_compute_environment(
        computeEnvironmentName="spot", type="MANAGED", tags={"conveyor:reclaim-rate": "1.0"},
        computeResources={"type": "SPOT", "maxvCpus": 2, "subnets": []})
    live.batch.create_job_queue(jobQueueName="spotq", priority=1,
                                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "spot"}])
    jd = register(live.batch, "idle", ["sleep", "30"])
    job = live.submit("spot", jd, jobQueue="spotq", retryStrategy={"attempts": 2, "evaluateOnExit": [
        {"action": "RETRY", "onStatusReason": "Host EC2*"}, {"action": "EXIT", "onReason": "*"}]})
    detail = wait_for_status(live.batch, job, "FAILED", deadline=20)
    assert len(detail["attempts"]) == 2  # retried once on the host loss, then attempts ran out
    for attempt in detail["attempts"]:
        assert attempt["statusReason"].startswith("Host EC2 (instance i-")
        assert attempt["statusReason"].endswith(") terminated.")
