"""DockerExecutor runs attempts whose image is a registry image as Docker containers.

UNTESTED against a real Docker engine (none on the development host): the argv
builder and exit interpretation are unit-tested; the real-run tests carry the
``docker`` marker and skip when ``docker info`` does not answer.

Same contract as ProcessExecutor: ``launch`` starts ``docker run`` (the client
process, in its own session, output appended to the attempt log) and returns its
pid; the client's exit is caught by a pidfd reaper; then, on a small worker pool
so slow Docker calls never hold up other exits, ``docker inspect`` tells an
OOM kill (State.OOMKilled) or a start failure apart from a normal exit, and the
container is removed (hence no ``--rm``). Attempts with a local image (``file://``
or an absolute folder) or no image run through an inner ProcessExecutor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib.localbatch.execution.executor import (
    OOM_REASON,
    PULL_ERROR,
    ExitCallback,
    ExitInfo,
    LaunchError,
    LaunchRequest,
    ProcessExecutor,
)
from chalicelib.localbatch.execution.reaper import Reaper, collect_exit_code
from chalicelib.localbatch.execution.spawn import (
    ATTEMPT_VAR,
    START_ERROR,
    TOKEN_VAR,
    describe_start_error,
    make_workdir,
    open_log,
    resolve_local_image,
    signal_group,
)

logger = logging.getLogger(__name__)

ENGINE_LABEL = "conveyor.engine"
ATTEMPT_LABEL = "conveyor.attempt"
SCRATCH = "/scratch"
DOCKER_ERROR_EXIT = 125  # the docker CLI/daemon failed, the container did not run
_PULL_HINTS = ("pull access denied", "unable to find image", "manifest unknown", "repository does not exist",
               "no such image", "failed to resolve reference", "error pulling image")
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def container_name(attempt_key: str) -> str:
    """A valid, unique Docker name for an attempt (hash suffix keeps it unique)."""
    digest = hashlib.sha1(attempt_key.encode()).hexdigest()[:8]
    return f"conveyor-{_NAME_UNSAFE.sub('-', attempt_key)[:100]}-{digest}"


def build_run_argv(request: LaunchRequest, token: str, *, docker: str = "docker") -> list[str]:
    """The ``docker run`` command line for one attempt."""
    argv = [docker, "run", "--quiet", "--name", container_name(request.attempt_key),
            "--label", f"{ENGINE_LABEL}={token}", "--label", f"{ATTEMPT_LABEL}={request.attempt_key}"]
    env = {k: v for k, v in request.env.items() if k != "CUDA_VISIBLE_DEVICES"}
    # --gpus already exposes only the granted devices, renumbered from 0 inside the
    # container, so the host-side CUDA_VISIBLE_DEVICES would point at wrong ids.
    env[TOKEN_VAR] = token
    env[ATTEMPT_VAR] = request.attempt_key
    for name in sorted(env):
        argv += ["-e", f"{name}={env[name]}"]
    if request.memory_mib > 0:
        # Same value for swap: no swap, like a Batch job without maxSwap.
        argv += ["--memory", f"{request.memory_mib}m", "--memory-swap", f"{request.memory_mib}m"]
    if request.vcpus > 0:
        argv += ["--cpus", format(request.vcpus, "g")]
    if request.gpu_ids:
        # The CLI parses --gpus as CSV, so a device list needs literal quotes.
        argv += ["--gpus", '"device=' + ",".join(str(gpu) for gpu in request.gpu_ids) + '"']
    argv += ["--mount", bind_mount(request.workdir, SCRATCH), "-w", SCRATCH, str(request.image), *request.argv]
    return argv


def bind_mount(source: str, target: str) -> str:
    """A ``--mount`` bind spec; unlike ``-v``, a ':' in the host path is fine.

    The value is parsed as CSV, so a field holding ',' or '"' is quoted.
    """
    field = f"source={source}"
    if "," in field or '"' in field:
        field = '"' + field.replace('"', '""') + '"'
    return f"type=bind,{field},target={target}"


def docker_error_line(log_tail: str) -> str:
    """The daemon's error from the end of a log (``docker: Error response ...``)."""
    for line in reversed(log_tail.splitlines()):
        text = line.strip()
        if text.startswith("docker: ") or "Error response from daemon" in text:
            return text.removeprefix("docker: ").strip()
    return "docker run failed"


def interpret_exit(attempt_key: str, code: int, state: Mapping[str, Any] | None, log_tail: str) -> ExitInfo:
    """Turns the client's exit code and the container's State into an ExitInfo."""
    if state is not None and state.get("OOMKilled"):
        return ExitInfo(attempt_key, 137, OOM_REASON, True)
    if code == DOCKER_ERROR_EXIT:
        message = docker_error_line(log_tail)
        kind = PULL_ERROR if any(hint in message.lower() for hint in _PULL_HINTS) else START_ERROR
        return ExitInfo(attempt_key, None, f"{kind}: {message}", False)
    if state is not None and state.get("Error"):
        # e.g. exec: "foo": executable file not found in $PATH (client exits 126/127)
        return ExitInfo(attempt_key, None, f"{START_ERROR}: {state['Error']}", False)
    exit_code = state.get("ExitCode", code) if state is not None else code
    return ExitInfo(attempt_key, int(exit_code) if exit_code is not None else code, None, True)


def read_tail(path: str, size: int = 4096) -> str:
    """The last ``size`` bytes of a file as text ('' when unreadable)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass(eq=False)
class _Container:
    key: str
    name: str
    proc: subprocess.Popen[bytes]
    log_path: str
    stopping: bool = False


class DockerExecutor:
    """Runs registry images with Docker; local images through a ProcessExecutor."""

    def __init__(self, engine_token: str, *, docker: str = "docker") -> None:
        self._token = engine_token
        self._docker = docker
        self._local = ProcessExecutor(engine_token)
        self._reaper = Reaper("conveyor-docker-reaper")
        self._finishers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="conveyor-docker")
        self._lock = threading.Lock()
        self._containers: dict[str, _Container] = {}
        self._by_pid: dict[int, _Container] = {}
        self._callback: ExitCallback | None = None
        self._client_env = {**os.environ, TOKEN_VAR: engine_token}
        self._closed = False

    def set_exit_callback(self, callback: ExitCallback) -> None:
        self._callback = callback
        self._local.set_exit_callback(callback)

    def launch(self, request: LaunchRequest) -> int:
        """Starts ``docker run`` (or a local process); -1 when it could not start.

        Raises:
            LaunchError: the executor is closed or the key is already running.
        """
        if not request.image or resolve_local_image(request.image) is not None:
            return self._local.launch(request)
        with self._lock:
            if self._closed:
                raise LaunchError("executor is closed")
            if request.attempt_key in self._containers:
                raise LaunchError(f"attempt {request.attempt_key!r} is already running")
        try:
            make_workdir(request.workdir)
            log_fd = open_log(request.log_path)
        except OSError as err:
            return self._fail_start(request.attempt_key, describe_start_error(err))
        env = {**self._client_env, ATTEMPT_VAR: request.attempt_key}
        try:
            proc = subprocess.Popen(build_run_argv(request, self._token, docker=self._docker),
                                    stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                                    env=env, close_fds=True, start_new_session=True)
        except OSError as err:
            return self._fail_start(request.attempt_key, describe_start_error(err))
        finally:
            os.close(log_fd)
        record = _Container(request.attempt_key, container_name(request.attempt_key), proc, request.log_path)
        with self._lock:
            self._containers[record.key] = record
            self._by_pid[proc.pid] = record
        self._reaper.watch(proc.pid, self._on_client_exit)
        return proc.pid

    def stop(self, attempt_key: str, grace_seconds: float) -> None:
        """``docker stop -t <grace>`` in the background (SIGTERM, then SIGKILL)."""
        with self._lock:
            record = self._containers.get(attempt_key)
            if record is None:
                self._local.stop(attempt_key, grace_seconds)
                return
            if record.stopping and grace_seconds > 0:
                return
            record.stopping = True
        seconds = max(0, math.ceil(grace_seconds))
        threading.Thread(target=self._docker_stop, args=(record, seconds), daemon=True).start()

    def running(self) -> list[str]:
        with self._lock:
            return [*self._containers, *self._local.running()]

    def running_containers(self) -> list[str]:
        with self._lock:
            return list(self._containers)

    def kill_orphans(self) -> list[str]:
        """Kills orphan processes (local jobs, old docker clients), then removes our containers."""
        keys = set(self._local.kill_orphans())
        listing = self._docker_cmd("ps", "-a", "--filter", f"label={ENGINE_LABEL}={self._token}",
                                   "--format", f'{{{{.Names}}}}\t{{{{.Label "{ATTEMPT_LABEL}"}}}}')
        names = []
        for line in listing.stdout.splitlines():
            name, _, key = line.partition("\t")
            if name:
                names.append(name)
                keys.add(key)
        if names:
            self._docker_cmd("rm", "-f", *names, timeout=60)
        return sorted(k for k in keys if k)

    def close(self) -> None:
        """Removes running containers, delivers their exits, stops threads."""
        with self._lock:
            self._closed = True
            names = [record.name for record in self._containers.values()]
        if names:
            self._docker_cmd("rm", "-f", *names, timeout=60)
        deadline = time.monotonic() + 10.0
        while self.running_containers() and time.monotonic() < deadline:
            time.sleep(0.05)  # let the reaper and finishers report the removed containers
        self._local.close()
        self._reaper.close()
        self._finishers.shutdown(wait=True)

    # -- internals -------------------------------------------------------------

    def _fail_start(self, attempt_key: str, reason: str) -> int:
        info = ExitInfo(attempt_key, None, reason, False)
        self._reaper.call_soon(lambda: self._deliver(info))
        return -1

    def _on_client_exit(self, pid: int) -> None:
        with self._lock:  # forget the pid before reaping it, so no one signals a recycled pid
            record = self._by_pid.pop(pid, None)
        code = collect_exit_code(pid)
        if record is None:
            return
        record.proc.returncode = code
        self._finishers.submit(self._finish, record, code)

    def _finish(self, record: _Container, code: int) -> None:
        try:
            state = self._inspect_state(record.name)
            info = interpret_exit(record.key, code, state, read_tail(record.log_path) if code == 125 else "")
            self._docker_cmd("rm", "-f", record.name)
        except Exception:  # edge of a worker thread: an exit must still be reported
            logger.exception("finishing container %s failed", record.name)
            info = ExitInfo(record.key, code, None, True)
        with self._lock:
            self._containers.pop(record.key, None)
        self._deliver(info)

    def _inspect_state(self, name: str) -> dict[str, Any] | None:
        result = self._docker_cmd("inspect", "--format", "{{json .State}}", name)
        if result.returncode != 0:
            return None  # never created (e.g. the pull failed)
        try:
            state = json.loads(result.stdout)
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    def _docker_stop(self, record: _Container, seconds: int) -> None:
        result = self._docker_cmd("stop", "-t", str(seconds), record.name, timeout=seconds + 30)
        if result.returncode != 0:
            # No container yet (still pulling): end the client instead.
            with self._lock:
                if self._by_pid.get(record.proc.pid) is record:
                    signal_group(record.proc.pid, signal.SIGKILL)

    def _docker_cmd(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self._docker, *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError) as err:
            return subprocess.CompletedProcess([self._docker, *args], 1, "", str(err))

    def _deliver(self, info: ExitInfo) -> None:
        callback = self._callback
        if callback is not None:
            callback(info)
