"""Executor protocol; ProcessExecutor runs each attempt as a local process group.

Contract with the scheduler: ``launch`` starts an attempt and returns at once;
the exit callback fires exactly once per launched attempt, from the reaper
thread (also for failed starts and OOM kills); ``stop`` ends an attempt with
SIGTERM then SIGKILL. Every child carries ``CONVEYOR_ENGINE_TOKEN`` and
``CONVEYOR_ATTEMPT_KEY`` in its environment so that after a kill -9 of the
engine, ``kill_orphans`` on restart can find and end what the old engine left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.localbatch.execution import procfs
from chalicelib.localbatch.execution.reaper import Reaper, collect_exit_code
from chalicelib.localbatch.execution.spawn import (
    ATTEMPT_VAR,
    START_ERROR,
    TOKEN_VAR,
    EnvBuilder,
    ExecutableCache,
    build_base_env,
    describe_start_error,
    make_workdir,
    open_log,
    resolve_local_image,
    signal_group,
)

logger = logging.getLogger(__name__)

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
PULL_ERROR = "CannotPullContainerError"
ORPHAN_WAIT_SECONDS = 10.0


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
    stopping: bool = False
    oom: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class MemoryLimitMixin:
    """The memory watcher both executors share: a thread, running only while an attempt
    with a memory limit is alive, that sums its process group's resident memory every poll
    and ends an attempt over its limit (OutOfMemoryError, as the ECS agent reports it).

    Hosts provide `_lock`, `_closed`, `_closing`, `_poll`, `_memory_thread`,
    `_memory_pending`, `_limited_attempts()` (pid -> attempt) and `_kill_for_memory()`.
    """

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
            for pgid, used in procfs.sum_group_rss(limited).items():
                if used > limited[pgid].memory_limit:
                    self._kill_for_memory(limited[pgid], used)
            self._closing.wait(self._poll)


class ProcessExecutor(MemoryLimitMixin):
    """Runs attempts as local process groups; see the module docstring."""

    def __init__(self, engine_token: str, *, memory_poll_seconds: float = 0.25) -> None:
        if not engine_token:
            raise ValueError("engine_token must be a non-empty string")
        self._token = engine_token
        self._poll = memory_poll_seconds
        self._env = EnvBuilder(build_base_env(os.environ, sys.executable))
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
        image_dir = resolve_local_image(request.image)
        if image_dir is not None and not os.path.isdir(image_dir):
            reason = f"{PULL_ERROR}: local image folder {image_dir} does not exist"
            return self._report_failed_start(request.attempt_key, reason)
        if not request.argv:
            return self._report_failed_start(request.attempt_key, f"{START_ERROR}: empty command")
        try:
            env, path = self._env.build(request.env, attempt_key=request.attempt_key, token=self._token,
                                        image_dir=image_dir, gpu_ids=request.gpu_ids)
            make_workdir(request.workdir)
            log_fd = open_log(request.log_path)
        except (OSError, TypeError) as err:
            return self._report_failed_start(request.attempt_key, describe_start_error(err))
        try:
            proc = subprocess.Popen(
                request.argv,
                executable=self._executables.resolve(request.argv[0], path),
                stdin=self._devnull,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=request.workdir,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            return self._report_failed_start(request.attempt_key, describe_start_error(err))
        finally:
            os.close(log_fd)
        return self._track(_Attempt(request.attempt_key, proc, max(0, request.memory_mib) * 1024 * 1024))

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
        return kill_tagged_orphans(self._token, self._live_keys, exclude={os.getpid()})

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
            self._idle.wait_for(lambda: not self._attempts, timeout=5.0)
        self._closing.set()
        self._memory_pending.set()
        self._reaper.close()
        os.close(self._devnull)
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
        # Only when our SIGKILL is what ended it; a leader that exited on its own
        # just before the kill keeps its own exit status.
        reason = OOM_REASON if attempt.oom and code == 128 + signal.SIGKILL else None
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
        logger.info("attempt %s used %d MiB over its %d MiB limit; killed",
                    attempt.key, used >> 20, attempt.memory_limit >> 20)


def kill_tagged_orphans(token: str, live_keys: Callable[[], set[str]], *, exclude: set[int]) -> list[str]:
    """Kills every process carrying this engine token that is not one of our live attempts.

    Both executors use it at engine start. Their whole process groups go (SIGKILL), in up to
    three rounds (a process forked while we were killing is caught by the next), then it waits
    up to ``ORPHAN_WAIT_SECONDS`` for them to be gone. Returns the attempt keys killed.
    """
    keys: set[str] = set()
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    for _ in range(3):
        own_keys = live_keys()  # our own live attempts (and their children) are not orphans
        found = [orphan for orphan in procfs.find_tagged(TOKEN_VAR, token, ATTEMPT_VAR, exclude=exclude)
                 if orphan.attempt_key not in own_keys]
        if not found:
            break
        own_group = os.getpgrp()
        for orphan in found:
            if orphan.pgid > 1 and orphan.pgid != own_group:
                signal_group(orphan.pgid, signal.SIGKILL)
            try:
                os.kill(orphan.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if orphan.attempt_key:
                keys.add(orphan.attempt_key)
        pending = [orphan.pid for orphan in found]
        while pending and time.monotonic() < deadline:
            pending = [pid for pid in pending if procfs.is_alive(pid)]
            if pending:
                time.sleep(0.02)
        if pending:
            logger.warning("orphan processes still alive after SIGKILL: %s", pending)
    return sorted(keys)


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
