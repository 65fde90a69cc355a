"""The reaper thread on its own: exits, timers, queued calls, failing handlers, close."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator

import pytest

from chalicelib.localbatch.execution.reaper import Reaper, collect_exit_code

WAIT = 30.0


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    made = Reaper("test-reaper")
    yield made
    made.close()


def test_exit_is_reported_with_its_code_on_the_reaper_thread(reaper: Reaper) -> None:
    seen: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
    proc = subprocess.Popen(["sh", "-c", "exit 5"])
    reaper.watch(proc.pid, lambda pid: seen.put((collect_exit_code(pid), threading.current_thread().name)))
    assert seen.get(timeout=WAIT) == (5, "test-reaper")
    proc.returncode = 5
    assert reaper.watched_count() == 0


def test_child_that_exited_before_watch_is_still_reported(reaper: Reaper) -> None:
    seen: queue.SimpleQueue[int] = queue.SimpleQueue()
    proc = subprocess.Popen(["true"])
    # Wait for it to become a zombie without reaping it.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    reaper.watch(proc.pid, lambda pid: seen.put(collect_exit_code(pid)))
    assert seen.get(timeout=WAIT) == 0
    proc.returncode = 0


def test_timers_run_in_deadline_order_and_calls_run_soon(reaper: Reaper) -> None:
    order: queue.SimpleQueue[str] = queue.SimpleQueue()
    reaper.call_later(0.2, lambda: order.put("late"))
    reaper.call_later(0.05, lambda: order.put("early"))
    reaper.call_soon(lambda: order.put("now"))
    assert [order.get(timeout=WAIT) for _ in range(3)] == ["now", "early", "late"]


def test_a_failing_handler_does_not_stop_the_thread(reaper: Reaper) -> None:
    done: queue.SimpleQueue[str] = queue.SimpleQueue()

    def explode() -> None:
        raise RuntimeError("handler bug")

    reaper.call_soon(explode)
    reaper.call_soon(lambda: done.put("still running"))
    assert done.get(timeout=WAIT) == "still running"


def test_close_runs_queued_calls_then_refuses_new_watches() -> None:
    made = Reaper("closing-reaper")
    done: queue.SimpleQueue[str] = queue.SimpleQueue()
    made.call_soon(lambda: done.put("queued"))
    made.close()
    assert done.get(timeout=WAIT) == "queued"
    proc = subprocess.Popen(["true"])
    try:
        with pytest.raises(RuntimeError, match="closed"):
            made.watch(proc.pid, lambda pid: None)
    finally:
        proc.wait()
    made.close()  # idempotent
