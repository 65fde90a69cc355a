"""Executor protocol; ProcessExecutor runs each attempt as a local process group.

Contract with the scheduler: ``launch`` starts an attempt and returns at once;
the exit callback fires exactly once per launched attempt, from the reaper
thread (also for failed starts and OOM kills); ``stop`` ends an attempt with
SIGTERM then SIGKILL. Each attempt runs in its own cgroup where the host allows
(attempt_setup.py, cgroups.py), so that after a kill -9 of the engine ``kill_orphans``
on restart finds and ends everything the old engine left, whatever the job did to its
environment, group or session; children also carry ``CONVEYOR_ENGINE_TOKEN`` and
``CONVEYOR_ATTEMPT_KEY``, the fallback where cgroups are unusable.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.localbatch.execution.attempt_setup import (
    ORPHAN_WAIT_SECONDS,
    PULL_ERROR,
    AttemptSetup,
    kill_tagged_orphans,
)
from chalicelib.localbatch.execution.cgroups import CgroupPaths
from chalicelib.localbatch.execution.container_env import ContainerEnvironment
from chalicelib.localbatch.execution.reaper import Reaper, collect_exit_code
from chalicelib.localbatch.execution.spawn import (
    EnvBuilder,
    ExecutableCache,
    describe_start_error,
    make_workdir,
    open_log,
    signal_group,
)

logger = logging.getLogger(__name__)

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
__all__ = ["ORPHAN_WAIT_SECONDS", "PULL_ERROR", "kill_tagged_orphans"]


@dataclass(frozen=True)
class LaunchRequest:
    """One attempt to run: what, where, with which limits."""

    attempt_key: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    workdir: str
    log_path: str
    memory_mib: int = 0
    vcpus: float = 1.0
    gpu_ids: tuple[int, ...] = ()
    image: str | None = None
    spare_log: str = ""  # an empty file made ahead, renamed into place as the log (executors may ignore it)


@dataclass(frozen=True)
class ExitInfo:
    """How an attempt ended; ``exit_code`` is None when it never started."""

    attempt_key: str
    exit_code: int | None
    reason: str | None
    started: bool


class LaunchError(Exception):
    """Raised by ``launch`` only for misuse (closed executor, duplicate key).

    A process that cannot start is not an exception: ``launch`` returns -1 and
    the exit callback reports ``started=False`` with a CannotStartContainerError.
    """


ExitCallback = Callable[[ExitInfo], None]
ExitsCallback = Callable[[list[ExitInfo]], None]  # optional (set_exits_callback): exits read together


class Executor(Protocol):
    def set_exit_callback(self, callback: ExitCallback) -> None: ...
    def launch(self, request: LaunchRequest) -> int: ...
    def stop(self, attempt_key: str, grace_seconds: float) -> None: ...
    def running(self) -> list[str]: ...
    def kill_orphans(self) -> list[str]: ...
    def close(self) -> None: ...


class ArmingExecutor(Executor, Protocol):
    """An executor that can hold a successor's launch and start it the moment a running attempt
    exits (the spawner; see scheduling/arming.py). Others simply have no ``arm``."""

    def arm(self, host_key: str, request: LaunchRequest) -> bool: ...
    def disarm(self, host_key: str) -> None: ...


@dataclass(eq=False)
class _Attempt:
    key: str
    proc: subprocess.Popen[bytes]
    memory_limit: int  # bytes; 0 = unlimited
    cgroups: CgroupPaths | None = None
    stopping: bool = False
    oom: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class MemoryLimitMixin:
    """The memory watcher both executors share: a thread, running only while an attempt
    with a memory limit is alive, that asks `_setup.over_memory` (the kernel's OOM kill in the
    attempt's memory cgroup, else its group's proportional set sizes) every poll and ends an
    attempt over its limit (OutOfMemoryError, as the ECS agent reports it).

    Hosts provide `_lock`, `_closed`, `_closing`, `_poll`, `_memory_thread`, `_setup`,
    `_memory_pending`, `_limited_attempts()` (pid -> attempt) and `_kill_for_memory()`.
    """

    _setup: AttemptSetup

    _lock: threading.Lock
    _closed: bool
    _closing: threading.Event
    _poll: float
    _memory_thread: threading.Thread | None
    _memory_pending: threading.Event

    def _limited_attempts(self) -> dict[int, Any]:  # called with _lock held
        raise NotImplementedError

    def _kill_for_memory(self, attempt: Any, used: int) -> None:
        raise NotImplementedError

    def _start_memory_watch(self) -> None:
        self._memory_pending.set()
        with self._lock:
            if self._memory_thread is None and not self._closed:
                self._memory_thread = threading.Thread(target=self._watch_memory, name="conveyor-memory",
                                                       daemon=True)
                self._memory_thread.start()

    def _watch_memory(self) -> None:
        while not self._closing.is_set():
            with self._lock:
                limited = self._limited_attempts()
                if not limited:
                    self._memory_pending.clear()  # sleep without polling until a limited attempt starts
            if not limited:
                self._memory_pending.wait()
                continue
            for attempt, used in self._setup.over_memory(limited):
                self._kill_for_memory(attempt, used)
            self._closing.wait(self._poll)


class ProcessExecutor(MemoryLimitMixin):
    """Runs attempts as local process groups; see the module docstring."""

    def __init__(self, engine_token: str, *, memory_poll_seconds: float = 0.25,
                 container: ContainerEnvironment | None = None, use_cgroups: bool = True) -> None:
        if not engine_token:
            raise ValueError("engine_token must be a non-empty string")
        self._token = engine_token
        self._poll = memory_poll_seconds
        self._setup = AttemptSetup(engine_token, container, use_cgroups=use_cgroups)
        self._env = EnvBuilder(self._setup.base)
        # One /dev/null for every child's stdin instead of an open+close per launch.
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._executables = ExecutableCache()
        self._reaper = Reaper()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._attempts: dict[str, _Attempt] = {}
        self._by_pid: dict[int, _Attempt] = {}
        self._callback: ExitCallback | None = None
        self._closed = False
        self._memory_thread: threading.Thread | None = None
        self._memory_pending = threading.Event()
        self._closing = threading.Event()

    # -- Executor protocol ---------------------------------------------------

    def set_exit_callback(self, callback: ExitCallback) -> None:
        self._callback = callback

    def launch(self, request: LaunchRequest) -> int:
        """Starts the attempt; returns its pid (= pgid), or -1 if it could not start.

        Raises:
            LaunchError: the executor is closed or the key is already running.
        """
        with self._lock:
            if self._closed:
                raise LaunchError("executor is closed")
            if request.attempt_key in self._attempts:
                raise LaunchError(f"attempt {request.attempt_key!r} is already running")
        prepared = self._setup.prepare(request)
        if isinstance(prepared, str):
            return self._report_failed_start(request.attempt_key, prepared)
        try:
            env = self._env.build(prepared.env)
            make_workdir(request.workdir)
            log_fd = open_log(request.log_path)
            joins = [os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                     for path in (prepared.cgroups.procs_files() if prepared.cgroups else [])]
        except (OSError, TypeError) as err:
            self._setup.abandon(request.attempt_key, prepared.cgroups)
            return self._report_failed_start(request.attempt_key, describe_start_error(err))
        try:
            proc = subprocess.Popen(
                request.argv,
                executable=self._executables.resolve(request.argv[0], prepared.env.get("PATH")),
                stdin=self._devnull,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=request.workdir,
                env=env,
                close_fds=True,
                start_new_session=True,
                # Joins the attempt's cgroups before exec (only writes to fds opened above).
                preexec_fn=(lambda: _join_cgroups(joins)) if joins else None,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            self._setup.abandon(request.attempt_key, prepared.cgroups)
            return self._report_failed_start(request.attempt_key, describe_start_error(err))
        finally:
            os.close(log_fd)
            for fd in joins:
                os.close(fd)
        return self._track(_Attempt(request.attempt_key, proc, max(0, request.memory_mib) * 1024 * 1024,
                                    prepared.cgroups))

    def stop(self, attempt_key: str, grace_seconds: float) -> None:
        """SIGTERMs the group now and SIGKILLs it after the grace if still alive."""
        with self._lock:
            attempt = self._attempts.get(attempt_key)
            if attempt is None:
                return
            if grace_seconds <= 0:
                signal_group(attempt.pid, signal.SIGKILL)
            elif not attempt.stopping:
                signal_group(attempt.pid, signal.SIGTERM)
            attempt.stopping = True
        if grace_seconds > 0:
            self._reaper.call_later(grace_seconds, lambda: self._kill_if_current(attempt))

    def running(self) -> list[str]:
        with self._lock:
            return list(self._attempts)

    def kill_orphans(self) -> list[str]:
        """SIGKILLs the process groups of earlier engines with our token.

        Waits (up to ``ORPHAN_WAIT_SECONDS``) until they are gone, so a new
        attempt never overlaps an old one. Returns the attempt keys killed.
        """
        return self._setup.kill_orphans(self._live_keys, exclude={os.getpid()})

    def describe(self) -> str:
        """How attempts are tracked and what environment they get (serve's start line)."""
        return self._setup.describe()

    def _live_keys(self) -> set[str]:
        with self._lock:
            return set(self._attempts)

    def close(self) -> None:
        """Kills every running attempt, delivers their exits, stops threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for attempt in self._attempts.values():
                signal_group(attempt.pid, signal.SIGKILL)
                self._setup.kill(attempt.cgroups)
            self._idle.wait_for(lambda: not self._attempts, timeout=5.0)
        self._closing.set()
        self._memory_pending.set()
        self._reaper.close()
        os.close(self._devnull)
        self._setup.close()
        if self._memory_thread is not None:
            self._memory_thread.join(2.0)

    # -- internals -------------------------------------------------------------

    def _track(self, attempt: _Attempt) -> int:
        with self._lock:
            self._attempts[attempt.key] = attempt
            self._by_pid[attempt.pid] = attempt
        try:
            self._reaper.watch(attempt.pid, self._on_exit)
        except (OSError, RuntimeError) as err:
            # Without a pidfd we cannot follow it: end it now rather than leak it.
            with self._lock:
                self._attempts.pop(attempt.key, None)
                self._by_pid.pop(attempt.pid, None)
            signal_group(attempt.pid, signal.SIGKILL)
            attempt.proc.returncode = collect_exit_code(attempt.pid)
            self._setup.finish(attempt.key, attempt.cgroups)
            return self._report_failed_start(attempt.key, describe_start_error(err))
        if attempt.memory_limit:
            self._start_memory_watch()
        return attempt.pid

    def _report_failed_start(self, attempt_key: str, reason: str) -> int:
        info = ExitInfo(attempt_key, exit_code=None, reason=reason, started=False)
        self._reaper.call_soon(lambda: self._deliver(info))
        return -1

    def _on_exit(self, pid: int) -> None:
        # Runs on the reaper thread once the leader has exited (a zombie still
        # holding its pid and pgid, so signalling the group below is safe).
        with self._lock:
            attempt = self._by_pid.pop(pid, None)
            if attempt is not None:
                self._attempts.pop(attempt.key, None)
            if self._closed:
                self._idle.notify_all()
        # Like a container, the attempt ends when its main process does.
        signal_group(pid, signal.SIGKILL)
        code = collect_exit_code(pid)
        if attempt is None:
            return
        attempt.proc.returncode = code  # so Popen never waits on a recycled pid
        kernel_oom = self._setup.finish(attempt.key, attempt.cgroups)
        # Only when a kill for memory is what ended it; a leader that exited on its own
        # just before our kill keeps its own exit status.
        reason = OOM_REASON if kernel_oom or (attempt.oom and code == 128 + signal.SIGKILL) else None
        if kernel_oom:  # the kernel killed a process at the limit: the attempt was killed for memory
            code = 128 + signal.SIGKILL
        self._deliver(ExitInfo(attempt.key, exit_code=code if code >= 0 else None, reason=reason, started=True))

    def _deliver(self, info: ExitInfo) -> None:
        callback = self._callback
        if callback is None:
            logger.warning("no exit callback set; dropping exit of %s", info.attempt_key)
            return
        callback(info)

    def _kill_if_current(self, attempt: _Attempt) -> None:
        with self._lock:
            if self._attempts.get(attempt.key) is attempt:
                signal_group(attempt.pid, signal.SIGKILL)

    # -- memory limits ---------------------------------------------------------

    def _limited_attempts(self) -> dict[int, Any]:
        return {a.pid: a for a in self._attempts.values() if a.memory_limit and not a.oom}

    def _kill_for_memory(self, attempt: _Attempt, used: int) -> None:
        with self._lock:
            if self._attempts.get(attempt.key) is not attempt:
                return
            attempt.oom = True
            signal_group(attempt.pid, signal.SIGKILL)
            self._setup.kill(attempt.cgroups)
        logger.info("attempt %s used %d MiB over its %d MiB limit; killed",
                    attempt.key, used >> 20, attempt.memory_limit >> 20)


def _join_cgroups(fds: list[int]) -> None:
    for fd in fds:
        os.write(fd, b"0")


def docker_available(timeout: float = 2.0) -> bool:
    """True when ``docker info`` answers within ``timeout`` seconds."""
    try:
        result = subprocess.run(
            ["docker", "info"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=timeout, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0
