"""DockerExecutor against a real Docker engine; skipped where `docker info` does not answer."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest

from chalicelib.localbatch.execution.docker_executor import DockerExecutor
from chalicelib.localbatch.execution.executor import OOM_REASON, ExitInfo, LaunchRequest, docker_available

IMAGE = os.environ.get("CONVEYOR_TEST_IMAGE", "public.ecr.aws/docker/library/alpine:3.19")

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not docker_available(), reason="no Docker engine answers `docker info`"),
]


def run(tmp_path: Path, key: str, *argv: str, **options: object) -> tuple[ExitInfo, str]:
    executor = DockerExecutor(f"docker-test-{os.getpid()}-{time.monotonic_ns()}")
    exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
    executor.set_exit_callback(exits.put)
    log = tmp_path / f"{key.replace('#', '_')}.log"
    values: dict[str, object] = {"attempt_key": key, "argv": argv, "env": {"AWS_BATCH_JOB_ID": key},
                                 "workdir": str(tmp_path / "work"), "log_path": str(log), "image": IMAGE}
    values.update(options)
    try:
        executor.launch(LaunchRequest(**values))  # type: ignore[arg-type]
        info = exits.get(timeout=300)
    finally:
        executor.close()
    return info, log.read_text()


def test_exit_code_env_and_log(tmp_path: Path) -> None:
    info, log = run(tmp_path, "d1#1", "sh", "-c", "echo $AWS_BATCH_JOB_ID; exit 3")
    assert (info.exit_code, info.reason, info.started) == (3, None, True)
    assert log.strip().endswith("d1#1")


def test_oom_kill_is_reported(tmp_path: Path) -> None:
    info, _ = run(tmp_path, "d2#1", "sh", "-c", "tail /dev/zero", memory_mib=16)
    assert (info.exit_code, info.reason) == (137, OOM_REASON)


def test_unpullable_image_is_cannot_pull(tmp_path: Path) -> None:
    info, _ = run(tmp_path, "d3#1", "true", image="conveyor.invalid/no/such-image:0")
    assert info.started is False
    assert info.reason is not None and info.reason.startswith("CannotPullContainerError: ")
