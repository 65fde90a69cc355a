"""SpawnerExecutor: the Executor protocol on top of conveyor-spawner, a small C helper process.

Why: launching and reaping in Python (Popen, pidfd reaper, mkdir/open) costs
about half a millisecond of GIL-held CPU per attempt, which competes with the
scheduler thread. Here Python only encodes one request per launch; the C helper
(``spawner.c``, protocol described there) makes the folders, forks, reaps and
kills groups, and reports STARTED / FAILED / EXITED on a pipe that one reader
thread turns into exit callbacks.

Behaviour matches ProcessExecutor: the same child environment (built by
``spawn.build_child_env`` and overlaid on the spawner's environ, which is the
engine's base env), ``launch`` returns the pid (= pgid) or -1 after the spawner
answered, failed starts and exits arrive through the callback from the reader
thread, memory limits are enforced by summing the group's RSS. Signals are sent
by the spawner, which is the reaper, so a recycled pid is never signalled.

If the engine dies (kill -9) the spawner sees EOF and exits without killing:
the attempts keep running until the next engine's ``kill_orphans``. A launch
made from inside the exit callback cannot wait for the reader thread (it is the
caller), so it returns 0 ("pid not known yet"); the scheduler treats that as a
successful launch and a failed start still arrives through the callback.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chalicelib.localbatch import procfs
from chalicelib.localbatch.executor import (
    OOM_REASON,
    ORPHAN_WAIT_SECONDS,
    PULL_ERROR,
    ExitCallback,
    ExitInfo,
    LaunchError,
    LaunchRequest,
)
from chalicelib.localbatch.spawn import (
    ATTEMPT_VAR,
    START_ERROR,
    TOKEN_VAR,
    ExecutableCache,
    build_base_env,
    build_child_env,
    describe_start_error,
    resolve_local_image,
    signal_group,
)
from chalicelib.localbatch.spawner_build import last_error, spawner_path

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
HELLO_TIMEOUT_SECONDS = 10.0
QUIT_TIMEOUT_SECONDS = 10.0
SPAWNER_LOST = f"{START_ERROR}: the conveyor-spawner process exited unexpectedly"
_EDITED = ("PATH", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<IBQ")  # length, type, id
_EVENT = struct.Struct("<BQ")
_I32 = struct.Struct("<i")
_STOP = struct.Struct("<IBQI")
REQ_LAUNCH, REQ_STOP, REQ_KILL, REQ_QUIT, REQ_FAIL = 1, 2, 3, 4, 5
EV_HELLO, EV_STARTED, EV_FAILED, EV_EXITED = 0, 1, 2, 3


class SpawnerUnavailable(Exception):
    """The spawner could not be built or started (no compiler, exec refused, ...)."""


@dataclass(eq=False)
class _Attempt:
    key: str
    ident: int
    link: _Link
    memory_limit: int  # bytes; 0 = unlimited
    waiter: Any = None  # a held lock released when the spawner answered the launch
    pid: int = 0  # 0 until STARTED
    fail_reason: str | None = None  # set when Python itself refused the launch
    oom: bool = False


@dataclass(eq=False)
class _Link:
    """One spawner process and the thread reading its events."""

    proc: subprocess.Popen[bytes]
    write_fd: int
    read_fd: int
    reader: threading.Thread | None = None
    quitting: bool = False
    closed: bool = False  # our end of its stdin is closed (under write_lock): never write to a reused fd
    write_lock: threading.Lock = field(default_factory=threading.Lock)


def encode_str(parts: list[bytes], value: bytes) -> None:
    parts.append(_U32.pack(len(value)))
    parts.append(value)


def _checked(value: Any) -> bytes:
    encoded = os.fsencode(value)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    return encoded


def encode_env(env: dict[str, str]) -> list[bytes]:
    """``NAME=value`` entries, refusing what execve cannot carry (like Popen does)."""
    entries = []
    for name, value in env.items():
        raw_name = _checked(name)
        if not raw_name or b"=" in raw_name:
            raise ValueError(f"illegal environment variable name {name!r}")
        entries.append(raw_name + b"=" + _checked(value))
    return entries


class SpawnerExecutor:
    """Runs attempts as local process groups through conveyor-spawner; see the module docstring.

    Raises:
        SpawnerUnavailable: the helper cannot be built or does not start.
    """

    def __init__(self, engine_token: str, *, memory_poll_seconds: float = 0.25) -> None:
        if not engine_token:
            raise ValueError("engine_token must be a non-empty string")
        binary = spawner_path()
        if binary is None:
            raise SpawnerUnavailable(last_error() or "conveyor-spawner could not be built")
        self._binary = binary
        self._token = engine_token
        self._poll = memory_poll_seconds
        self._base_env = build_base_env(os.environ, sys.executable)
        self._edited = {name: self._base_env[name] for name in _EDITED if name in self._base_env}
        self._executables = ExecutableCache()
        self._lock = threading.Lock()
        self._attempts: dict[str, _Attempt] = {}
        self._by_id: dict[int, _Attempt] = {}
        self._ids = itertools.count(1)
        self._callback: ExitCallback | None = None
        self._closed = False
        self._memory_thread: threading.Thread | None = None
        self._memory_pending = threading.Event()
        self._closing = threading.Event()
        self._link: _Link | None = self._start_link()

    # -- Executor protocol ---------------------------------------------------

    def set_exit_callback(self, callback: ExitCallback) -> None:
        self._callback = callback

    def launch(self, request: LaunchRequest) -> int:
        """Starts the attempt; returns its pid (= pgid), -1 if it could not start (0: see module doc).

        Raises:
            LaunchError: the executor is closed, the key is already running, or
                the spawner is gone and cannot be restarted.
        """
        key = request.attempt_key
        with self._lock:
            if self._closed:
                raise LaunchError("executor is closed")
            if key in self._attempts:
                raise LaunchError(f"attempt {key!r} is already running")
            link = self._link if self._link is not None else self._restart_link()
            attempt = _Attempt(key, next(self._ids), link, max(0, request.memory_mib) * 1024 * 1024)
            wait = threading.current_thread() is not link.reader
            if wait:  # armed before the attempt is visible to the reader, which may release it at once
                attempt.waiter = threading.Lock()
                attempt.waiter.acquire()
            self._attempts[key] = attempt
            self._by_id[attempt.ident] = attempt
        self._send(link, self._encode_launch(request, attempt))
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
        self._send(attempt.link, _STOP.pack(_STOP.size - 4, REQ_STOP, attempt.ident, min(grace_ms, 2**32 - 1)))

    def running(self) -> list[str]:
        with self._lock:
            return [key for key, attempt in self._attempts.items() if attempt.pid > 0]

    def kill_orphans(self) -> list[str]:
        """SIGKILLs the process groups of earlier engines with our token, as ProcessExecutor does.

        Waits (up to ``ORPHAN_WAIT_SECONDS``) until they are gone. Returns the attempt keys killed.
        """
        keys: set[str] = set()
        deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
        link = self._link
        exclude = {os.getpid()} | ({link.proc.pid} if link is not None else set())
        for _ in range(3):  # a process forked while we were killing is caught next round
            with self._lock:  # our own live attempts (and their children) are not orphans
                own_keys = set(self._attempts)
            found = [orphan for orphan in procfs.find_tagged(TOKEN_VAR, self._token, ATTEMPT_VAR, exclude=exclude)
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

    def close(self) -> None:
        """Kills every running attempt, delivers their exits, stops the spawner and threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            link, self._link = self._link, None
        if link is not None:
            self._quit(link)
        self._closing.set()
        self._memory_pending.set()
        if self._memory_thread is not None:
            self._memory_thread.join(2.0)

    # -- the spawner process -------------------------------------------------

    def _start_link(self) -> _Link:
        try:
            proc = subprocess.Popen([self._binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env=self._base_env, cwd="/", close_fds=True, start_new_session=True)
        except OSError as err:
            raise SpawnerUnavailable(f"cannot start {self._binary}: {err}") from err
        assert proc.stdin is not None and proc.stdout is not None
        link = _Link(proc, proc.stdin.fileno(), proc.stdout.fileno())
        try:
            self._read_hello(link)
        except SpawnerUnavailable:
            proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()
            raise
        link.reader = threading.Thread(target=self._read_events, args=(link,), name="conveyor-spawner-events",
                                       daemon=True)
        link.reader.start()
        return link

    def _restart_link(self) -> _Link:
        # Caller holds self._lock; the previous spawner died (its attempts were reported).
        try:
            self._link = self._start_link()
        except SpawnerUnavailable as err:
            raise LaunchError(f"conveyor-spawner cannot be restarted: {err}") from err
        logger.warning("conveyor-spawner restarted")
        return self._link

    @staticmethod
    def _read_hello(link: _Link) -> None:
        data = b""
        while len(data) < 9:
            ready, _, _ = select.select([link.read_fd], [], [], HELLO_TIMEOUT_SECONDS)
            chunk = os.read(link.read_fd, 9 - len(data)) if ready else b""
            if not chunk:
                raise SpawnerUnavailable("conveyor-spawner did not say hello (exited or hung)")
            data += chunk
        length, kind, version = struct.unpack("<IBI", data)
        if (length, kind, version) != (5, EV_HELLO, PROTOCOL_VERSION):
            raise SpawnerUnavailable(f"conveyor-spawner speaks another protocol: {data!r}")

    def _send(self, link: _Link, payload: bytes) -> None:
        view = memoryview(payload)
        with link.write_lock:
            if link.closed:
                return  # the reader reports what was pending
            try:
                while view:
                    view = view[os.write(link.write_fd, view):]
            except OSError as err:
                # The spawner is gone; its reader reports every attempt still pending.
                logger.warning("writing to conveyor-spawner failed: %s", err)

    def _quit(self, link: _Link) -> None:
        link.quitting = True
        self._send(link, struct.pack("<IB", 1, REQ_QUIT))
        self._close_stdin(link)
        if link.reader is not None and link.reader is not threading.current_thread():
            link.reader.join(QUIT_TIMEOUT_SECONDS)
        try:
            link.proc.wait(QUIT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("conveyor-spawner did not quit; killing it")
            link.proc.kill()
            link.proc.wait()

    @staticmethod
    def _close_stdin(link: _Link) -> None:
        with link.write_lock:
            link.closed = True
            assert link.proc.stdin is not None
            try:
                link.proc.stdin.close()
            except OSError:
                pass

    def _encode_launch(self, request: LaunchRequest, attempt: _Attempt) -> bytes:
        """The LAUNCH request, or a FAIL request echoing why Python refused it."""
        reason = None
        image_dir = resolve_local_image(request.image)
        if image_dir is not None and not os.path.isdir(image_dir):
            reason = f"{PULL_ERROR}: local image folder {image_dir} does not exist"
        elif not request.argv:
            reason = f"{START_ERROR}: empty command"
        else:
            try:
                overlay = build_child_env(self._edited, request.env, attempt_key=request.attempt_key,
                                          token=self._token, image_dir=image_dir, gpu_ids=request.gpu_ids)
                parts = [b"", bytes((REQ_LAUNCH,)), attempt.ident.to_bytes(8, "little")]
                encode_str(parts, _checked(os.path.abspath(request.workdir)))
                encode_str(parts, _checked(os.path.abspath(request.log_path)))
                argv = [_checked(arg) for arg in request.argv]
                program = self._executables.resolve(request.argv[0], overlay.get("PATH"))
                encode_str(parts, _checked(program) if program else b"")
                parts.append(_U32.pack(len(argv)))
                for arg in argv:
                    encode_str(parts, arg)
                env = encode_env(overlay)
                parts.append(_U32.pack(len(env)))
                for entry in env:
                    encode_str(parts, entry)
                body_len = sum(map(len, parts))
                parts[0] = _U32.pack(body_len)
                return b"".join(parts)
            except (TypeError, ValueError) as err:
                reason = describe_start_error(err)
        attempt.fail_reason = reason
        message = reason.encode()
        return b"".join((_HEADER.pack(1 + 8 + 4 + len(message), REQ_FAIL, attempt.ident),
                         _U32.pack(len(message)), message))

    # -- events ------------------------------------------------------------------

    def _read_events(self, link: _Link) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = os.read(link.read_fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            pos = 0
            while len(buffer) - pos >= 4:
                (length,) = _U32.unpack_from(buffer, pos)
                if len(buffer) - pos - 4 < length:
                    break
                try:
                    self._on_event(bytes(buffer[pos + 4:pos + 4 + length]))
                except Exception:  # edge of the reader loop: one bad handler must not stop exits
                    logger.exception("handling a conveyor-spawner event failed")
                pos += 4 + length
            del buffer[:pos]
        self._on_link_lost(link)

    def _on_event(self, body: bytes) -> None:
        kind, ident = _EVENT.unpack_from(body, 0)
        if kind == EV_STARTED:
            (pid,) = _I32.unpack_from(body, 9)
            with self._lock:
                attempt = self._by_id.get(ident)
                if attempt is None:
                    return
                attempt.pid = pid
            if attempt.waiter is not None:
                attempt.waiter.release()
            if attempt.memory_limit:
                self._start_memory_watch()
        elif kind == EV_FAILED:
            (size,) = _U32.unpack_from(body, 9)
            message = body[13:13 + size].decode("utf-8", "replace")
            attempt = self._forget(ident)
            if attempt is not None:
                reason = attempt.fail_reason or f"{START_ERROR}: {message}"
                if attempt.waiter is not None:
                    attempt.waiter.release()
                self._deliver(ExitInfo(attempt.key, exit_code=None, reason=reason, started=False))
        elif kind == EV_EXITED:
            (code,) = _I32.unpack_from(body, 9)
            attempt = self._forget(ident)
            if attempt is not None:
                reason = OOM_REASON if attempt.oom else None
                self._deliver(ExitInfo(attempt.key, exit_code=code, reason=reason, started=True))
        else:
            logger.warning("unknown conveyor-spawner event %d", kind)

    def _forget(self, ident: int) -> _Attempt | None:
        with self._lock:
            attempt = self._by_id.pop(ident, None)
            if attempt is not None:
                self._attempts.pop(attempt.key, None)
            return attempt

    def _on_link_lost(self, link: _Link) -> None:
        with self._lock:
            if self._link is link:
                self._link = None
            lost = [attempt for attempt in self._attempts.values() if attempt.link is link]
        if lost or not link.quitting:
            logger.error("conveyor-spawner (pid %d) exited unexpectedly; %d attempt(s) lost",
                         link.proc.pid, len(lost))
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
        if not link.quitting:
            try:
                link.proc.wait(QUIT_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                link.proc.kill()
            self._close_stdin(link)
        assert link.proc.stdout is not None
        link.proc.stdout.close()

    def _deliver(self, info: ExitInfo) -> None:
        callback = self._callback
        if callback is None:
            logger.warning("no exit callback set; dropping exit of %s", info.attempt_key)
            return
        callback(info)

    # -- memory limits ---------------------------------------------------------

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
                limited = {a.pid: a for a in self._attempts.values() if a.memory_limit and a.pid > 0 and not a.oom}
                if not limited:
                    self._memory_pending.clear()  # sleep without polling until a limited attempt starts
            if not limited:
                self._memory_pending.wait()
                continue
            for pgid, used in procfs.sum_group_rss(limited).items():
                if used > limited[pgid].memory_limit:
                    self._kill_for_memory(limited[pgid], used)
            self._closing.wait(self._poll)

    def _kill_for_memory(self, attempt: _Attempt, used: int) -> None:
        with self._lock:
            if self._attempts.get(attempt.key) is not attempt:
                return
            attempt.oom = True
        self._send(attempt.link, _HEADER.pack(1 + 8, REQ_KILL, attempt.ident))
        logger.info("attempt %s used %d MiB over its %d MiB limit; killed",
                    attempt.key, used >> 20, attempt.memory_limit >> 20)
