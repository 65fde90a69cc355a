"""SpawnerExecutor: the Executor protocol on top of conveyor-spawner, a small C helper process.

Why: launching and reaping in Python (Popen, pidfd reaper, mkdir/open) costs
about half a millisecond of GIL-held CPU per attempt, which competes with the
scheduler thread. Here Python only encodes one request per launch; the C helper
(``spawner.c``, protocol described there, bytes moved by ``spawner_link``)
makes the folders, forks, reaps and kills groups, and reports STARTED / FAILED /
EXITED on a pipe that a reader thread turns into exit callbacks. There are
``SPAWNERS`` helpers; a chain of armed launches stays with its first attempt's.

Behaviour matches ProcessExecutor: the same child environment (the container's
base variables are the spawner's environ, each attempt's are overlaid, both from
``attempt_setup.AttemptSetup``), the same per-attempt cgroups (the child joins them
before its exec), ``launch`` returns the pid (= pgid) or -1 after the spawner
answered, failed starts and exits arrive through the callback from the reader
thread, memory limits are held by the attempt's memory cgroup (else summed PSS). Signals are sent
by the spawner, which is the reaper, so a recycled pid is never signalled.

If the engine dies (kill -9) the spawner sees EOF and exits without killing:
the attempts keep running until the next engine's ``kill_orphans``. A launch
made from inside the exit callback cannot wait for the reader thread when that
thread is the caller, so it returns 0 ("pid not known yet"); the scheduler
treats that as a successful launch and a failed start still arrives through the
callback.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from chalicelib.localbatch.execution.attempt_setup import AttemptSetup
from chalicelib.localbatch.execution.cgroups import CgroupPaths
from chalicelib.localbatch.execution.container_env import ContainerEnvironment
from chalicelib.localbatch.execution.executor import (
    OOM_REASON,
    ExitCallback,
    ExitInfo,
    ExitsCallback,
    LaunchError,
    LaunchRequest,
    MemoryLimitMixin,
)
from chalicelib.localbatch.execution.spawn import (
    START_ERROR,
    ExecutableCache,
    describe_start_error,
)
from chalicelib.localbatch.execution.spawner_build import last_error, spawner_path
from chalicelib.localbatch.execution.spawner_link import (
    EV_DISARMED,
    EV_EXITED,
    EV_FAILED,
    EV_STARTED,
    SpawnerLink,
    SpawnerUnavailable,
    encode_arm,
    encode_disarm,
    encode_env,
    encode_fail,
    encode_kill,
    encode_launch,
    encode_launcher,
    encode_stop,
    fs_bytes,
)
from chalicelib.localbatch.execution.warm_launches import LAUNCHER_KEY_PREFIX, WarmLaunches, parse_warm_modules

__all__ = ["DISARMED", "SPAWNER_LOST", "SpawnerExecutor", "SpawnerUnavailable"]

logger = logging.getLogger(__name__)

SPAWNER_LOST = f"{START_ERROR}: the conveyor-spawner process exited unexpectedly"
# Spawner processes per executor. One serialises every slot's fork and exec and sleeps
# on every slot's exits; with two, each chain of armed launches (see arming.py) has its
# own, and the kernel can run both where there are cores for them.
SPAWNERS = 2
DISARMED = "conveyor: armed launch withdrawn before it started"


@dataclass(eq=False)
class _Attempt:
    key: str
    ident: int
    link: SpawnerLink
    memory_limit: int  # bytes; 0 = unlimited
    waiter: Any = None  # a held lock released when the spawner answered the launch
    pid: int = 0  # 0 until STARTED
    fail_reason: str | None = None  # set when Python itself refused the launch
    oom: bool = False
    cgroups: CgroupPaths | None = None
    kernel_oom: bool = False  # the attempt's memory cgroup killed a process at its limit


class SpawnerExecutor(MemoryLimitMixin):
    """Runs attempts as local process groups through conveyor-spawner; see the module docstring.

    Raises:
        SpawnerUnavailable: the helper cannot be built or does not start.
    """

    takes_spare_logs = True  # LaunchRequest.spare_log is renamed into place by the spawner

    def __init__(self, engine_token: str, *, memory_poll_seconds: float = 0.25, spawners: int = SPAWNERS,
                 container: ContainerEnvironment | None = None, use_cgroups: bool = True) -> None:
        if not engine_token:
            raise ValueError("engine_token must be a non-empty string")
        binary = spawner_path()
        if binary is None:
            raise SpawnerUnavailable(last_error() or "conveyor-spawner could not be built")
        self._binary = binary
        self._token = engine_token
        self._poll = memory_poll_seconds
        self._setup = AttemptSetup(engine_token, container, use_cgroups=use_cgroups)
        self._base_env = self._setup.base
        self._warm = _warm_launches(self._setup, engine_token)
        self._executables = ExecutableCache()
        self._lock = threading.Lock()
        self._attempts: dict[str, _Attempt] = {}
        self._by_id: dict[int, _Attempt] = {}
        self._ids = itertools.count(1)
        self._callback: ExitCallback | None = None
        self._batch_callback: ExitsCallback | None = None
        self._closed = False
        self._memory_thread: threading.Thread | None = None
        self._memory_pending = threading.Event()
        self._closing = threading.Event()
        self._links: list[SpawnerLink | None] = [self._start_link() for _ in range(max(1, spawners))]
        self._turn = 0  # round robin over the spawners for launches that start a chain

    # -- Executor protocol ---------------------------------------------------

    def set_exit_callback(self, callback: ExitCallback) -> None:
        self._callback = callback

    def set_exits_callback(self, callback: ExitsCallback) -> None:
        """Exits read together from the spawner are then delivered in one call, in order."""
        self._batch_callback = callback

    def launch(self, request: LaunchRequest) -> int:
        """Starts the attempt; returns its pid (= pgid), -1 if it could not start (0: see module doc).

        Raises:
            LaunchError: the executor is closed, the key is already running, or
                the spawner is gone and cannot be restarted.
        """
        return self._launch(request, may_wait=True)

    def launch_nowait(self, request: LaunchRequest) -> int:
        """Sends the attempt to the spawner and returns 0 at once, without waiting for its pid.

        The engine uses this from inside its tick: a start that fails is reported through
        the exit callback (started=False), like every other ending.

        Raises:
            LaunchError: as for launch.
        """
        return self._launch(request, may_wait=False)

    def arm(self, after_key: str, request: LaunchRequest) -> bool:
        """Has the spawner start `request` the moment attempt `after_key` exits (at once if it has).

        The attempt is then reported like one from launch_nowait (FAILED / EXITED through
        the exit callback), unless disarm() withdraws it first: then its exit callback says
        started=False with reason DISARMED. Returns False, sending nothing, when Python
        refuses the launch itself (the caller launches it the ordinary way to report that).

        Raises:
            LaunchError: as for launch.
        """
        with self._lock:
            after = self._attempts.get(after_key)
            attempt = self._register(request, after)
            after_ident = after.ident if after is not None and after.link is attempt.link else 0
        payload = self._encode_launch(request, attempt)
        if attempt.fail_reason is not None:
            self._forget(attempt.ident)
            return False
        attempt.link.send(encode_arm(after_ident, payload))
        return True

    def disarm(self, after_key: str) -> None:
        """Withdraws the launch armed on `after_key`, unless the spawner has launched it already."""
        with self._lock:
            after = self._attempts.get(after_key)
        if after is not None:
            after.link.send(encode_disarm(after.ident))

    def _register(self, request: LaunchRequest, after: _Attempt | None = None) -> _Attempt:
        # Caller holds self._lock. An armed launch goes to its host's spawner, which holds the chain.
        key = request.attempt_key
        if self._closed:
            raise LaunchError("executor is closed")
        if key in self._attempts:
            raise LaunchError(f"attempt {key!r} is already running")
        if after is not None and after.link in self._links:
            link = after.link
        else:
            index, self._turn = self._turn, (self._turn + 1) % len(self._links)
            link = self._links[index] or self._restart_link(index)
        attempt = _Attempt(key, next(self._ids), link, max(0, request.memory_mib) * 1024 * 1024)
        self._attempts[key] = attempt
        self._by_id[attempt.ident] = attempt
        return attempt

    def _launch(self, request: LaunchRequest, *, may_wait: bool) -> int:
        with self._lock:
            attempt = self._register(request)
            link = attempt.link
            wait = may_wait and threading.current_thread() is not link.reader
            if wait:  # set while we hold the lock under which the reader finds the attempt to answer it
                attempt.waiter = threading.Lock()
                attempt.waiter.acquire()
        link.send(self._encode_launch(request, attempt))
        if not wait:
            return 0
        attempt.waiter.acquire()  # released by the reader on STARTED / FAILED / spawner loss
        return attempt.pid if attempt.pid > 0 else -1

    def stop(self, attempt_key: str, grace_seconds: float) -> None:
        """SIGTERMs the group now and SIGKILLs it after the grace if still alive."""
        with self._lock:
            attempt = self._attempts.get(attempt_key)
        if attempt is None:
            return
        grace_ms = 0 if grace_seconds <= 0 else max(1, math.ceil(grace_seconds * 1000))
        attempt.link.send(encode_stop(attempt.ident, grace_ms))

    def running(self) -> list[str]:
        with self._lock:
            return [key for key, attempt in self._attempts.items() if attempt.pid > 0]

    def kill_orphans(self) -> list[str]:
        """SIGKILLs the process groups of earlier engines with our token, as ProcessExecutor does.

        Waits (up to ``ORPHAN_WAIT_SECONDS``) until they are gone. Returns the attempt keys killed.
        """
        exclude = {os.getpid(), *self.spawner_pids()}
        keys = self._setup.kill_orphans(self._live_keys, exclude=exclude)
        return [key for key in keys if not key.startswith(LAUNCHER_KEY_PREFIX)]

    def describe(self) -> str:
        """How attempts are tracked and what environment they get (serve's start line)."""
        warm = ", ".join(self._warm.modules) if self._warm is not None else "none"
        return f"{self._setup.describe()}; warm python -m modules: {warm}"

    def spawner_pids(self) -> list[int]:
        """The pids of the running spawner processes."""
        return [link.pid for link in list(self._links) if link is not None]

    def _live_keys(self) -> set[str]:
        with self._lock:
            keys = set(self._attempts)
        if self._warm is not None:
            keys.add(self._warm.marker)  # our launchers, and what they forked, are not orphans
        return keys

    def close(self) -> None:
        """Kills every running attempt, delivers their exits, stops the spawner and threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links, self._links = self._links, [None] * len(self._links)
        for link in links:
            if link is not None:
                link.quit()
        self._closing.set()
        self._memory_pending.set()
        if self._memory_thread is not None:
            self._memory_thread.join(2.0)
        self._setup.close()

    # -- the spawner process -------------------------------------------------

    def _start_link(self) -> SpawnerLink:
        return SpawnerLink(self._binary, self._base_env, self._on_events, self._on_link_lost)

    def _restart_link(self, index: int) -> SpawnerLink:
        # Caller holds self._lock; the previous spawner died (its attempts were reported).
        try:
            link = self._links[index] = self._start_link()
        except SpawnerUnavailable as err:
            raise LaunchError(f"conveyor-spawner cannot be restarted: {err}") from err
        logger.warning("conveyor-spawner restarted")
        return link

    def _encode_launch(self, request: LaunchRequest, attempt: _Attempt) -> bytes:
        """The LAUNCH request, or a FAIL request echoing why Python refused it."""
        prepared = self._setup.prepare(request)
        if isinstance(prepared, str):
            reason = prepared
        else:
            attempt.cgroups = prepared.cgroups
            try:
                program = self._executables.resolve(request.argv[0], prepared.env.get("PATH"))
                joins = "\n".join(prepared.cgroups.procs_files()) if prepared.cgroups else ""
                launcher = self._launcher_for(attempt.link, program, request.argv, prepared.env)
                return encode_launch(attempt.ident, fs_bytes(os.path.abspath(request.workdir)),
                                     fs_bytes(os.path.abspath(request.log_path)),
                                     fs_bytes(program) if program else b"",
                                     [fs_bytes(arg) for arg in request.argv], encode_env(prepared.env),
                                     spare=fs_bytes(request.spare_log) if request.spare_log else b"",
                                     cgroups=fs_bytes(joins), launcher=launcher)
            except (TypeError, ValueError) as err:
                reason = describe_start_error(err)
        attempt.fail_reason = reason
        return encode_fail(attempt.ident, reason)

    def _launcher_for(self, link: SpawnerLink, program: str | None, argv: list[str], env: dict[str, str]) -> int:
        """The warm launcher for this launch (0: none), started on its spawner if it is the first."""
        if self._warm is None:
            return 0
        if program is None and argv and os.path.isabs(argv[0]):
            program = argv[0]  # an absolute argv[0] is not looked up: it is the program
        if not self._warm.wants(program, argv):
            return 0  # before merging the environments: most launches (a DAG of `true`) stop here
        number, start = self._warm.launcher_for(link.pid, program, argv, {**self._base_env, **env})
        if start is not None:
            link.send(encode_launcher(start["number"], fs_bytes(start["program"]),
                                      [fs_bytes(arg) for arg in start["argv"]], encode_env(start["env"])))
        return number

    # -- events ------------------------------------------------------------------

    def _on_events(self, events: list[tuple[int, int, int | str]]) -> None:
        # Runs on the link's reader thread, in the order the spawner wrote the events.
        exits: list[ExitInfo] = []
        for kind, ident, value in events:
            try:
                self._on_event(kind, ident, value, exits)
            except Exception:
                logger.exception("handling conveyor-spawner event %d for attempt %d failed", kind, ident)
        if not exits:
            return
        if self._batch_callback is not None:
            self._batch_callback(exits)
        else:
            for info in exits:
                self._deliver(info)

    def _on_event(self, kind: int, ident: int, value: int | str, exits: list[ExitInfo]) -> None:
        if kind == EV_STARTED:
            with self._lock:
                attempt = self._by_id.get(ident)
                if attempt is None:
                    return
                attempt.pid = int(value)
            if attempt.waiter is not None:
                attempt.waiter.release()
            if attempt.memory_limit:
                self._start_memory_watch()
        elif kind == EV_FAILED:
            attempt = self._forget(ident)
            if attempt is not None:
                reason = attempt.fail_reason or f"{START_ERROR}: {value}"
                if attempt.waiter is not None:
                    attempt.waiter.release()
                exits.append(ExitInfo(attempt.key, exit_code=None, reason=reason, started=False))
        elif kind == EV_DISARMED:
            attempt = self._forget(ident)
            if attempt is not None:
                exits.append(ExitInfo(attempt.key, exit_code=None, reason=DISARMED, started=False))
        elif kind == EV_EXITED:
            attempt = self._forget(ident)
            if attempt is not None:
                oom = attempt.oom or attempt.kernel_oom
                # The kernel killed a process at the limit: the attempt was killed for memory,
                # even if its main process outlived that process by a moment.
                code = 128 + signal.SIGKILL if attempt.kernel_oom else int(value)
                exits.append(ExitInfo(attempt.key, exit_code=code,
                                      reason=OOM_REASON if oom else None, started=True))
        else:
            logger.warning("unknown conveyor-spawner event %d", kind)

    def _forget(self, ident: int) -> _Attempt | None:
        with self._lock:
            attempt = self._by_id.pop(ident, None)
            if attempt is not None:
                self._attempts.pop(attempt.key, None)
        if attempt is not None:
            # The main process is gone: so is everything else in its cgroup, whatever its group.
            attempt.kernel_oom = self._setup.finish(attempt.key, attempt.cgroups)
        return attempt

    def _on_link_lost(self, link: SpawnerLink) -> None:
        if self._warm is not None:
            self._warm.forget_link(link.pid)
        with self._lock:
            self._links = [None if known is link else known for known in self._links]
            lost = [attempt for attempt in self._attempts.values() if attempt.link is link]
        if lost or not link.quitting:
            logger.error("conveyor-spawner (pid %d) exited unexpectedly; %d attempt(s) lost",
                         link.pid, len(lost))
        for attempt in lost:
            self._forget(attempt.ident)
            if attempt.pid > 0:
                # The attempt is nobody's child now; end it rather than leak it.
                try:
                    os.killpg(attempt.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            elif attempt.waiter is not None:
                attempt.waiter.release()
            self._deliver(ExitInfo(attempt.key, exit_code=None, reason=attempt.fail_reason or SPAWNER_LOST,
                                   started=attempt.pid > 0))

    def _deliver(self, info: ExitInfo) -> None:
        callback = self._callback
        if callback is None:
            logger.warning("no exit callback set; dropping exit of %s", info.attempt_key)
            return
        callback(info)

    # -- memory limits ---------------------------------------------------------

    def _limited_attempts(self) -> dict[int, Any]:
        return {a.pid: a for a in self._attempts.values() if a.memory_limit and a.pid > 0 and not a.oom}

    def _kill_for_memory(self, attempt: _Attempt, used: int) -> None:
        with self._lock:
            if self._attempts.get(attempt.key) is not attempt:
                return
            attempt.oom = True
        attempt.link.send(encode_kill(attempt.ident))
        self._setup.kill(attempt.cgroups)
        logger.info("attempt %s used %d MiB over its %d MiB limit; killed",
                    attempt.key, used >> 20, attempt.memory_limit >> 20)


def _warm_launches(setup: AttemptSetup, token: str) -> WarmLaunches | None:
    """The warm launches the container options ask for (None: every attempt forks and execs)."""
    modules = setup.container.options.warm_modules
    if not modules:
        return None
    home = os.path.join(setup.container.images.root, "warm-home")  # no user site-packages, as a job's HOME
    return WarmLaunches(parse_warm_modules(modules), token, home)
