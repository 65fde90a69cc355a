"""Ctrl-C as a request, not an exception: SIGINT sets a flag the run commands check at safe points.

A KeyboardInterrupt raised at an arbitrary line could land between SubmitJob and the run
store's record of it (a job nobody would stop), or inside the in-process engine's critical
sections. With this guard the commands stop where they choose: after each recorded
submission and between progress polls.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class RunInterrupted(Exception):
    """The user pressed Ctrl-C; raised by ``Interrupts.check`` at a safe point."""


class Interrupts:
    """Context manager: while inside, SIGINT only sets ``requested`` (main thread only)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.count = 0
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        # Signal handlers can only be set from the main thread; elsewhere Ctrl-C is not ours.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.requested.set()

    def check(self, *_: object) -> None:
        """Raises RunInterrupted once Ctrl-C was pressed (usable as an ``on_submit`` callback)."""
        if self.requested.is_set():
            raise RunInterrupted()
