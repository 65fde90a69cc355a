"""SpawnerLink: one conveyor-spawner process, its wire protocol and the thread reading its events.

The record layouts are documented at the top of ``spawner.c``. This module
only moves bytes: it encodes requests, writes them (one lock, never to a closed
or reused fd), and hands each decoded event to a callback on its reader thread.
What the events mean for attempts is SpawnerExecutor's business.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 4
HELLO_TIMEOUT_SECONDS = 10.0
QUIT_TIMEOUT_SECONDS = 10.0
REQ_LAUNCH, REQ_STOP, REQ_KILL, REQ_QUIT, REQ_FAIL, REQ_ARM, REQ_DISARM, REQ_LAUNCHER = 1, 2, 3, 4, 5, 6, 7, 8
EV_HELLO, EV_STARTED, EV_FAILED, EV_EXITED, EV_DISARMED = 0, 1, 2, 3, 4

_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<IBQ")  # body length, type, attempt id
_STOP = struct.Struct("<IBQI")
_EVENT = struct.Struct("<BQ")
_I32 = struct.Struct("<i")

# Every event decoded from one read, in order: (event type, attempt id, pid / exit code / message)
EventsHandler = Callable[[list[tuple[int, int, "int | str"]]], None]


class SpawnerUnavailable(Exception):
    """The spawner could not be built or started (no compiler, exec refused, ...)."""


def fs_bytes(value: Any) -> bytes:
    """``os.fsencode`` that refuses NUL bytes, which execve cannot carry (as Popen does)."""
    encoded = os.fsencode(value)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    return encoded


def encode_env(env: Mapping[str, str]) -> list[bytes]:
    """``NAME=value`` entries; a name that is empty or holds '=' is refused like Popen does.

    Raises:
        TypeError: a name or value is not a string.
        ValueError: an illegal name, or a NUL byte.
    """
    return [_env_entry(name, value) for name, value in env.items()]


@functools.lru_cache(maxsize=8192)
def _env_entry(name: str, value: str) -> bytes:
    # Cached: almost every variable repeats from one launch to the next (queue, token, PATH,
    # the job's own environment), and encoding them all was a visible share of a launch.
    raw_name = fs_bytes(name)
    if not raw_name or b"=" in raw_name:
        raise ValueError(f"illegal environment variable name {name!r}")
    return raw_name + b"=" + fs_bytes(value)


def encode_launch(ident: int, workdir: bytes, log_path: bytes, program: bytes, argv: Iterable[bytes],
                  env: list[bytes], spare: bytes = b"", cgroups: bytes = b"", launcher: int = 0) -> bytes:
    """LAUNCH; an empty ``program`` makes the child search argv[0] on its own PATH.

    ``spare``: an empty file to rename into place as the log (b"": create the log).
    ``cgroups``: newline-separated cgroup.procs files the child joins before its exec.
    ``launcher``: the warm launcher to hand it to when that one is ready (0: none).
    """
    argv = list(argv)
    parts = [b"", bytes((REQ_LAUNCH,)), ident.to_bytes(8, "little"), _U32.pack(launcher)]
    for value in (workdir, log_path, spare, cgroups, program):
        parts += (_U32.pack(len(value)), value)
    _add_lists(parts, argv, env)
    parts[0] = _U32.pack(sum(map(len, parts)))
    return b"".join(parts)


def _add_lists(parts: list[bytes], *lists: list[bytes]) -> None:
    """Appends each list as a u32 count and its strings (u32 length + bytes)."""
    for items in lists:
        parts.append(_U32.pack(len(items)))
        for value in items:
            parts += (_U32.pack(len(value)), value)


def encode_launcher(number: int, program: bytes, argv: Iterable[bytes], env: list[bytes]) -> bytes:
    """LAUNCHER: start warm launcher `number` as `program argv` with `env` over the spawner's own."""
    parts = [b"", bytes((REQ_LAUNCHER,)), _U32.pack(number), _U32.pack(len(program)), program]
    _add_lists(parts, list(argv), env)
    parts[0] = _U32.pack(sum(map(len, parts)))
    return b"".join(parts)


def encode_arm(after: int, launch: bytes) -> bytes:
    """ARM: the LAUNCH record `launch` (from encode_launch), to run when attempt `after` exits."""
    body = bytes((REQ_ARM,)) + after.to_bytes(8, "little") + launch[5:]
    return _U32.pack(len(body)) + body


def encode_disarm(after: int) -> bytes:
    return _HEADER.pack(1 + 8, REQ_DISARM, after)


def encode_fail(ident: int, message: str) -> bytes:
    raw = message.encode()
    return _HEADER.pack(1 + 8 + 4 + len(raw), REQ_FAIL, ident) + _U32.pack(len(raw)) + raw


def encode_stop(ident: int, grace_ms: int) -> bytes:
    return _STOP.pack(_STOP.size - 4, REQ_STOP, ident, max(0, min(grace_ms, 2**32 - 1)))


def encode_kill(ident: int) -> bytes:
    return _HEADER.pack(1 + 8, REQ_KILL, ident)


def decode_event(body: bytes) -> tuple[int, int, int | str]:
    """Returns (type, attempt id, value): pid for STARTED, code for EXITED, text for FAILED, 0 for DISARMED."""
    kind, ident = _EVENT.unpack_from(body, 0)
    if kind == EV_DISARMED:
        return kind, ident, 0
    if kind == EV_FAILED:
        (size,) = _U32.unpack_from(body, 9)
        return kind, ident, body[13:13 + size].decode("utf-8", "replace")
    return kind, ident, _I32.unpack_from(body, 9)[0]


class SpawnerLink:
    """Starts the spawner, checks its HELLO and reads its events on a daemon thread.

    Raises:
        SpawnerUnavailable: it cannot be executed or does not answer.
    """

    def __init__(self, binary: str, env: Mapping[str, str], on_events: EventsHandler,
                 on_lost: Callable[[SpawnerLink], None]) -> None:
        try:
            # Own session: a terminal's Ctrl-C is for the engine, which then sends QUIT.
            self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(env),
                                         cwd="/", close_fds=True, start_new_session=True)
        except OSError as err:
            raise SpawnerUnavailable(f"cannot start {binary}: {err}") from err
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._write_fd = self.proc.stdin.fileno()
        self._read_fd = self.proc.stdout.fileno()
        self._write_lock = threading.Lock()
        self._closed = False  # our end of its stdin is closed: never write to a reused fd number
        self.quitting = False
        try:
            self._read_hello()
        except (SpawnerUnavailable, OSError) as err:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            raise SpawnerUnavailable(str(err)) from err
        self._on_events = on_events
        self._on_lost = on_lost
        self.reader = threading.Thread(target=self._read_events, name="conveyor-spawner-events", daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, payload: bytes) -> None:
        """Writes one request; a dead spawner is logged here and reported by the reader."""
        view = memoryview(payload)
        with self._write_lock:
            if self._closed:
                return
            try:
                while view:
                    view = view[os.write(self._write_fd, view):]
            except OSError as err:
                logger.warning("writing to conveyor-spawner failed: %s", err)

    def quit(self) -> None:
        """QUIT: the spawner kills every group, reports their exits and ends; waits for that."""
        self.quitting = True
        self.send(struct.pack("<IB", 1, REQ_QUIT))
        self.close_stdin()
        if self.reader is not threading.current_thread():
            self.reader.join(QUIT_TIMEOUT_SECONDS)
        try:
            self.proc.wait(QUIT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("conveyor-spawner did not quit; killing it")
            self.proc.kill()
            self.proc.wait()

    def close_stdin(self) -> None:
        with self._write_lock:
            self._closed = True
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def _read_hello(self) -> None:
        data = b""
        while len(data) < 9:
            ready, _, _ = select.select([self._read_fd], [], [], HELLO_TIMEOUT_SECONDS)
            chunk = os.read(self._read_fd, 9 - len(data)) if ready else b""
            if not chunk:
                raise SpawnerUnavailable("conveyor-spawner did not say hello (exited or hung)")
            data += chunk
        if struct.unpack("<IBI", data) != (5, EV_HELLO, PROTOCOL_VERSION):
            raise SpawnerUnavailable(f"conveyor-spawner speaks another protocol: {data!r}")

    def _read_events(self) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            pos, events = 0, []
            while len(buffer) - pos >= 4:
                (length,) = _U32.unpack_from(buffer, pos)
                if len(buffer) - pos - 4 < length:
                    break
                events.append(decode_event(bytes(buffer[pos + 4:pos + 4 + length])))
                pos += 4 + length
            del buffer[:pos]
            if events:
                # Handed over together: the engine then runs one scheduling round for all of them.
                try:
                    self._on_events(events)
                except Exception:  # edge of the reader loop: one bad handler must not stop exits
                    logger.exception("handling conveyor-spawner events failed")
        try:
            self._on_lost(self)
        finally:
            if not self.quitting:
                self.close_stdin()
                try:
                    self.proc.wait(QUIT_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()
