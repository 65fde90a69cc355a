"""Unit tests for the executor's pure helpers: /proc parsing, env merging, exit codes, images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chalicelib.localbatch.execution import procfs
from chalicelib.localbatch.execution.container_env import SYSTEM_PATH, ContainerEnvironment, ContainerOptions
from chalicelib.localbatch.execution.executor import LaunchError, LaunchRequest, ProcessExecutor
from chalicelib.localbatch.execution.factory import make_executor
from chalicelib.localbatch.execution.reaper import exit_code_from_status
from chalicelib.localbatch.execution.spawn import (
    ATTEMPT_VAR,
    TOKEN_VAR,
    EnvBuilder,
    ExecutableCache,
    describe_start_error,
    resolve_local_image,
    tag_env,
)

# A real /proc/<pid>/stat line whose command name holds spaces and a ')'.
STAT_LINE = "4242 (my (odd) name) S 17 4240 4240 0 -1 4194560 99 0 0 0 1 2 0 0 20 0 1 0 123 456 789 " \
            "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"


class TestProcfsParsing:
    def test_stat_fields_are_counted_after_the_last_parenthesis(self) -> None:
        stat = procfs.parse_stat(STAT_LINE)
        assert (stat.pid, stat.state, stat.ppid, stat.pgid) == (4242, "S", 17, 4240)
        assert not stat.is_zombie

    def test_zombie_state_is_recognised(self) -> None:
        assert procfs.parse_stat("7 (sh) Z 1 7 7 0").is_zombie

    @pytest.mark.parametrize("text", ["", "garbage", "12 (x) S"])
    def test_bad_stat_text_raises_value_error(self, text: str) -> None:
        with pytest.raises(ValueError, match="stat line"):
            procfs.parse_stat(text)

    def test_statm_rss_is_the_second_field_in_pages(self) -> None:
        assert procfs.parse_statm_rss("1000 250 30 4 0 60 0\n", page_size=4096) == 250 * 4096

    def test_bad_statm_raises_value_error(self) -> None:
        with pytest.raises(ValueError, match="statm"):
            procfs.parse_statm_rss("12")

    def test_environ_splits_on_nul_and_first_equals(self) -> None:
        raw = b"A=1\0B=x=y\0EMPTY=\0junk\0\0"
        assert procfs.parse_environ(raw) == {"A": "1", "B": "x=y", "EMPTY": ""}


class TestExitCodes:
    def test_normal_exit_keeps_its_code(self) -> None:
        assert exit_code_from_status(3 << 8) == 3
        assert exit_code_from_status(0) == 0

    @pytest.mark.parametrize(("signum", "expected"), [(9, 137), (15, 143), (2, 130)])
    def test_signal_maps_to_128_plus_signal_like_docker(self, signum: int, expected: int) -> None:
        assert exit_code_from_status(signum) == expected


def _request(**changes: object) -> LaunchRequest:
    fields: dict[str, object] = {"attempt_key": "job-1#1", "argv": ("true",), "env": {}, "workdir": "/w/1",
                                 "log_path": "/l/1", "image": "busybox"}
    fields.update(changes)
    return LaunchRequest(**fields)  # type: ignore[arg-type]


class TestEnvironment:
    @pytest.fixture
    def container(self, tmp_path: Path) -> ContainerEnvironment:
        host = {"PATH": "/venv/bin:/usr/bin", "AWS_SECRET_ACCESS_KEY": "s", "CONVEYOR_X": "1", "KEEP": "k"}
        return ContainerEnvironment(ContainerOptions(region="eu-west-1", pass_env=("KEEP", "ABSENT")),
                                    str(tmp_path), environ=host)

    def test_base_holds_no_host_variable_unless_passed(self, container: ContainerEnvironment) -> None:
        assert container.base == {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "AWS_EXECUTION_ENV": "AWS_ECS_EC2",
                                  "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1", "KEEP": "k"}

    def test_registry_image_runs_on_its_runtime_folder_then_the_system(self, container: ContainerEnvironment,
                                                                       tmp_path: Path) -> None:
        env = container.overlay(_request(), None)
        runtime_bin = container.images.bin_dir("busybox")
        assert runtime_bin.startswith(str(tmp_path))
        assert env["PATH"] == f"{runtime_bin}:{SYSTEM_PATH}"
        assert os.path.islink(f"{runtime_bin}/python")
        assert env["HOME"] == "/w/1"
        assert "PYTHONPATH" not in env

    def test_local_image_folder_comes_first_on_path_and_pythonpath(self, container: ContainerEnvironment) -> None:
        env = container.overlay(_request(image="file:///img"), "/img")
        assert env["PATH"].startswith("/img:")
        assert env["PYTHONPATH"] == "/img"

    def test_cuda_visible_devices_is_unset_without_gpus_and_set_with_them(
            self, container: ContainerEnvironment) -> None:
        assert "CUDA_VISIBLE_DEVICES" not in container.overlay(_request(env={"CUDA_VISIBLE_DEVICES": ""}), None)
        assert container.overlay(_request(gpu_ids=(0, 2)), None)["CUDA_VISIBLE_DEVICES"] == "0,2"

    def test_a_job_cannot_forge_the_engine_owned_variables(self, container: ContainerEnvironment) -> None:
        forged = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://evil", TOKEN_VAR: "x", ATTEMPT_VAR: "y"}
        env = tag_env(container.overlay(_request(env=forged), None), attempt_key="job-1#1", token="tok")
        assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
        assert (env[TOKEN_VAR], env[ATTEMPT_VAR]) == ("tok", "job-1#1")

    def test_env_builder_overlays_bytes_on_the_base(self) -> None:
        encoded = EnvBuilder({"PATH": "/bin", "LANG": "C"}).build({"PATH": "/img:/bin", "X": "1"})
        assert encoded == {b"PATH": b"/img:/bin", b"LANG": b"C", b"X": b"1"}

    def test_env_builder_rejects_non_string_values(self) -> None:
        with pytest.raises(TypeError):
            EnvBuilder({}).build({"N": 3})  # type: ignore[dict-item]

    def test_pss_is_read_from_smaps_rollup(self) -> None:
        assert procfs.parse_smaps_pss("0-1 ---p [rollup]\nRss: 1708 kB\nPss:  328 kB\n") == 328 * 1024
        with pytest.raises(ValueError):
            procfs.parse_smaps_pss("Rss: 1 kB\n")


class TestImages:
    def test_file_url_is_a_local_image(self) -> None:
        assert resolve_local_image("file:///opt/my%20tools") == "/opt/my tools"

    def test_registry_images_and_none_are_not_local(self) -> None:
        assert resolve_local_image("public.ecr.aws/docker/library/python:3.11") is None
        assert resolve_local_image(None) is None
        assert resolve_local_image("") is None

    def test_absolute_path_counts_only_when_it_is_a_folder(self) -> None:
        assert resolve_local_image(os.path.dirname(__file__)) == os.path.dirname(__file__)
        assert resolve_local_image("/no/such/folder/anywhere") is None


class TestStartErrors:
    def test_os_error_names_the_file_and_the_problem(self) -> None:
        err = FileNotFoundError(2, "No such file or directory", "nosuchcmd")
        assert describe_start_error(err) == "CannotStartContainerError: nosuchcmd: No such file or directory"

    def test_other_errors_use_their_message(self) -> None:
        assert describe_start_error(ValueError("embedded null byte")) == \
            "CannotStartContainerError: embedded null byte"


class TestExecutableCache:
    def test_relative_names_and_relative_path_entries_are_left_to_exec(self) -> None:
        cache = ExecutableCache()
        assert cache.resolve("./run.sh", "/bin") is None
        assert cache.resolve("sh", "relative/bin:/bin") is None
        assert cache.resolve("sh", None) is None

    def test_missing_program_is_left_to_exec(self) -> None:
        assert ExecutableCache().resolve("surely-no-such-program-xyz", "/nonexistent") is None


class TestFactory:
    def test_process_gives_a_process_executor(self) -> None:
        # "auto" prefers the C spawner: tests/integration/localbatch/test_spawner_executor.py
        executor = make_executor("tok", "process")
        try:
            assert isinstance(executor, ProcessExecutor)
        finally:
            executor.close()

    def test_unknown_kind_is_rejected_by_name(self) -> None:
        with pytest.raises(ValueError, match="executor kind must be one of"):
            make_executor("tok", "podman")

    def test_empty_token_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="engine_token"):
            ProcessExecutor("")

    def test_launch_after_close_is_a_launch_error(self) -> None:
        from chalicelib.localbatch.execution.executor import LaunchRequest

        executor = ProcessExecutor("tok")
        executor.close()
        with pytest.raises(LaunchError, match="closed"):
            executor.launch(LaunchRequest("k#1", ("true",), {}, "/nonexistent/w", "/nonexistent/l"))
