"""Unit tests for the Docker executor's pure parts: argv, names, exit interpretation."""

from __future__ import annotations

import re

from chalicelib.localbatch.execution.docker_executor import (
    bind_mount,
    build_run_argv,
    container_name,
    docker_error_line,
    interpret_exit,
)
from chalicelib.localbatch.execution.executor import OOM_REASON, LaunchRequest


def make_request(**overrides: object) -> LaunchRequest:
    values: dict[str, object] = {
        "attempt_key": "3f2a-uuid:17#2",
        "argv": ("python", "-c", "print(1)"),
        "env": {"AWS_BATCH_JOB_ID": "3f2a-uuid:17", "CUDA_VISIBLE_DEVICES": "1,3"},
        "workdir": "/data/work/3f2a/2",
        "log_path": "/data/logs/x.log",
        "memory_mib": 2048,
        "vcpus": 1.5,
        "gpu_ids": (1, 3),
        "image": "public.ecr.aws/docker/library/python:3.11",
    }
    values.update(overrides)
    return LaunchRequest(**values)  # type: ignore[arg-type]


def test_container_name_is_docker_safe_and_unique_per_key() -> None:
    name = container_name("3f2a-uuid:17#2")
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name)
    assert name.startswith("conveyor-3f2a-uuid-17-2-")
    # ':' and '#' both become '-', the hash suffix keeps such keys apart.
    assert container_name("a:1#2") != container_name("a#1:2")


def test_run_argv_carries_limits_env_labels_scratch_and_command() -> None:
    argv = build_run_argv(make_request(), "tok")
    assert argv[:2] == ["docker", "run"]
    assert "--rm" not in argv  # removed after `docker inspect` reads OOMKilled
    joined = " ".join(argv)
    assert f"--name {container_name('3f2a-uuid:17#2')}" in joined
    assert "--label conveyor.engine=tok" in joined
    assert "--label conveyor.attempt=3f2a-uuid:17#2" in joined
    assert "-e AWS_BATCH_JOB_ID=3f2a-uuid:17" in joined
    assert "-e CONVEYOR_ENGINE_TOKEN=tok" in joined
    assert "-e CONVEYOR_ATTEMPT_KEY=3f2a-uuid:17#2" in joined
    assert "--memory 2048m --memory-swap 2048m" in joined
    assert "--cpus 1.5" in joined
    assert argv[argv.index("--gpus") + 1] == '"device=1,3"'
    assert "--mount type=bind,source=/data/work/3f2a/2,target=/scratch -w /scratch" in joined
    image_at = argv.index("public.ecr.aws/docker/library/python:3.11")
    assert argv[image_at + 1 :] == ["python", "-c", "print(1)"]


def test_host_cuda_visible_devices_is_not_passed_into_the_container() -> None:
    assert not any(item.startswith("CUDA_VISIBLE_DEVICES=") for item in build_run_argv(make_request(), "t"))


def test_no_memory_limit_and_no_gpus_leave_their_flags_out() -> None:
    argv = build_run_argv(make_request(memory_mib=0, gpu_ids=()), "tok")
    assert "--memory" not in argv
    assert "--gpus" not in argv


def test_bind_mount_quotes_commas_and_keeps_colons() -> None:
    assert bind_mount("/w/job:1/2", "/scratch") == "type=bind,source=/w/job:1/2,target=/scratch"
    assert bind_mount('/w/a,b"c', "/scratch") == 'type=bind,"source=/w/a,b""c",target=/scratch'


def test_oom_killed_state_wins() -> None:
    info = interpret_exit("k", 137, {"OOMKilled": True, "ExitCode": 137, "Error": ""}, "")
    assert (info.exit_code, info.reason, info.started) == (137, OOM_REASON, True)


def test_exit_125_with_pull_error_is_cannot_pull() -> None:
    tail = ("docker: Error response from daemon: pull access denied for nosuch/image, repository does not "
            "exist or may require 'docker login'.\nSee 'docker run --help'.\n")
    info = interpret_exit("k", 125, None, tail)
    assert info.started is False and info.exit_code is None
    assert info.reason is not None
    assert info.reason.startswith("CannotPullContainerError: Error response from daemon: pull access denied")


def test_exit_125_other_daemon_error_is_cannot_start() -> None:
    info = interpret_exit("k", 125, None, "docker: Error response from daemon: invalid mount config.\n")
    assert info.reason == "CannotStartContainerError: Error response from daemon: invalid mount config."


def test_state_error_means_the_command_could_not_start() -> None:
    state = {"OOMKilled": False, "ExitCode": 127, "Error": 'exec: "nosuch": executable file not found in $PATH'}
    info = interpret_exit("k", 127, state, "")
    assert info.reason == 'CannotStartContainerError: exec: "nosuch": executable file not found in $PATH'
    assert info.started is False


def test_normal_exit_uses_the_container_exit_code() -> None:
    info = interpret_exit("k", 3, {"OOMKilled": False, "ExitCode": 3, "Error": ""}, "")
    assert (info.exit_code, info.reason, info.started) == (3, None, True)


def test_error_line_falls_back_to_a_generic_message() -> None:
    assert docker_error_line("just program output\n") == "docker run failed"
