"""One thread that waits for child exits (pidfd + epoll), timers and queued calls.

Why this shape: a thread per child costs too much at thousands of short jobs, and
``waitpid(-1)`` would steal exits of children the host process owns. A pidfd
becomes readable the moment its process exits, so the exit path has no polling
sleep. Timers (SIGKILL after a stop grace) and queued calls (reporting a failed
start) run on the same thread, so executors have a single place callbacks come
from.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

ReadyHandler = Callable[[int], None]


def exit_code_from_status(status: int) -> int:
    """Maps a waitpid status to Docker's convention: signal N -> 128 + N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def collect_exit_code(pid: int) -> int:
    """Reaps one exited child (``waitpid(pid)``, never -1) and returns its code.

    Returns -1 if someone else already reaped it (nothing left to report).
    """
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return -1
        except InterruptedError:
            continue
        return exit_code_from_status(status)


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    action: Callable[[], None] = field(compare=False)


class Reaper:
    """Calls ``on_ready(pid)`` on its own thread when a watched child exits.

    ``on_ready`` is expected to reap the pid (see :func:`collect_exit_code`).
    The thread starts on first use and stops with :meth:`close`.
    """

    def __init__(self, name: str = "conveyor-reaper") -> None:
        self._name = name
        self._epoll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[int, ReadyHandler]] = {}  # pidfd -> (pid, handler)
        self._timers: list[_Timer] = []
        self._calls: list[Callable[[], None]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None

    def watch(self, pid: int, on_ready: ReadyHandler) -> None:
        """Starts watching a child; ``on_ready(pid)`` runs once when it exits.

        Raises:
            OSError: the pidfd could not be opened (process limits).
            RuntimeError: the reaper is closed.
        """
        # A pidfd of an exited-but-unreaped child stays valid and is readable
        # at once, so a child that exits before this call is not lost.
        pidfd = os.pidfd_open(pid)
        with self._lock:
            if self._closed:
                os.close(pidfd)
                raise RuntimeError("reaper is closed")
            self._watched[pidfd] = (pid, on_ready)
            self._ensure_thread()
        # epoll_ctl is safe while another thread sits in epoll_wait; no wake needed.
        self._epoll.register(pidfd, select.EPOLLIN)

    def call_soon(self, action: Callable[[], None]) -> None:
        """Runs ``action`` on the reaper thread as soon as possible."""
        with self._lock:
            if self._closed:
                return
            self._calls.append(action)
            self._ensure_thread()
        self._wake()

    def call_later(self, delay: float, action: Callable[[], None]) -> None:
        """Runs ``action`` on the reaper thread after ``delay`` seconds."""
        timer = _Timer(time.monotonic() + max(0.0, delay), next(self._seq), action)
        with self._lock:
            if self._closed:
                return
            heapq.heappush(self._timers, timer)
            self._ensure_thread()
        self._wake()

    def watched_count(self) -> int:
        with self._lock:
            return len(self._watched)

    def close(self, timeout: float = 5.0) -> None:
        """Stops the thread after the calls already queued; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            for pidfd in self._watched:
                os.close(pidfd)
            self._watched.clear()
        self._epoll.close()
        os.close(self._wake_fd)

    def _ensure_thread(self) -> None:
        # Caller holds self._lock.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError:  # closed during shutdown
            pass

    def _next_timeout(self) -> float:
        with self._lock:
            if self._calls:
                return 0.0
            if not self._timers:
                return -1.0
            return max(0.0, self._timers[0].when - time.monotonic())

    def _run(self) -> None:
        while True:
            try:
                events = self._epoll.poll(self._next_timeout())
            except InterruptedError:
                continue
            except (OSError, ValueError):  # epoll closed under us
                return
            for fd, _ in events:
                if fd == self._wake_fd:
                    self._drain_wake()
                else:
                    self._handle_exit(fd)
            self._run_due()
            with self._lock:
                if self._closed and not self._calls:
                    return

    def _drain_wake(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass

    def _handle_exit(self, pidfd: int) -> None:
        with self._lock:
            entry = self._watched.pop(pidfd, None)
        if entry is None:
            return
        # Unregister before closing: a child forked by another thread may still hold a
        # copy of this pidfd (until its exec), and epoll keeps a registration alive as
        # long as any copy is open. A stale registration would later fire under a reused
        # fd number and be taken for another attempt's exit.
        try:
            self._epoll.unregister(pidfd)
        except (OSError, ValueError):
            pass
        os.close(pidfd)
        pid, on_ready = entry
        self._guarded(lambda: on_ready(pid))

    def _run_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = self._calls
            self._calls = []
            while self._timers and self._timers[0].when <= now:
                due.append(heapq.heappop(self._timers).action)
        for action in due:
            self._guarded(action)

    @staticmethod
    def _guarded(action: Callable[[], None]) -> None:
        # Edge of the executor loop: one failing handler must not stop reaping.
        try:
            action()
        except Exception:
            logger.exception("reaper handler failed")
