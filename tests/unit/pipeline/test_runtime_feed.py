"""The HTTP event feed of `conveyor run` against a `conveyor serve`: where it starts, pages to the tracker, a prompt stop."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from chalicelib.local.engine_reader import newest_seq
from chalicelib.local.runtime import _follow_feed


class BlockingReader:
    """An engine feed: ``pages`` one by one; the call after them blocks until released."""

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        self.pages = pages
        self.polling = threading.Event()
        self.release = threading.Event()

    def events(self, after: int, wait: float, job_id: str | None) -> tuple[list[dict[str, Any]], int]:
        if self.pages:
            return self.pages.pop(0), after + 1
        self.polling.set()
        self.release.wait(10)
        return [{"detail": {"jobId": "late"}}], after + 1


class PageTracker:
    def __init__(self) -> None:
        self.pages: list[list[dict[str, Any]]] = []

    def handle_many(self, events: list[dict[str, Any]]) -> None:
        self.pages.append(events)


def _start(reader: BlockingReader) -> tuple[PageTracker, threading.Event, threading.Lock, threading.Thread]:
    tracker = PageTracker()
    runtime = SimpleNamespace(tracker=tracker, follows_events=True)
    stop, handling = threading.Event(), threading.Lock()
    thread = threading.Thread(target=_follow_feed, args=(reader, runtime, stop, handling, 10), daemon=True)
    thread.start()
    return tracker, stop, handling, thread


def test_each_page_goes_to_the_tracker_whole() -> None:
    reader = BlockingReader([[{"detail": {"jobId": "a"}}, {"detail": {"jobId": "a:0"}}], [{"detail": {"jobId": "b"}}]])
    tracker, stop, _, thread = _start(reader)
    assert reader.polling.wait(10)
    assert [[e["detail"]["jobId"] for e in page] for page in tracker.pages] == [["a", "a:0"], ["b"]]
    stop.set()
    reader.release.set()
    thread.join(10)


def test_a_stop_during_the_long_poll_waits_for_nothing_and_hands_nothing_more_over() -> None:
    reader = BlockingReader([])
    tracker, stop, handling, thread = _start(reader)
    assert reader.polling.wait(10)  # the thread is in the long poll
    stop.set()
    assert handling.acquire(blocking=False)  # what stop_feed waits for is free at once
    handling.release()
    reader.release.set()  # the poll answers after the stop: its page is dropped
    thread.join(10)
    assert not thread.is_alive() and tracker.pages == []


def test_an_engine_gone_after_the_stop_ends_the_thread_quietly() -> None:
    class GoneReader(BlockingReader):
        def events(self, after: int, wait: float, job_id: str | None) -> tuple[list[dict[str, Any]], int]:
            self.polling.set()
            self.release.wait(10)
            raise SystemExit("error: cannot reach the engine at http://127.0.0.1:1: Remote end closed connection")

    reader = GoneReader([])
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # type: ignore[assignment]
    try:
        tracker, stop, _, thread = _start(reader)
        assert reader.polling.wait(10)
        stop.set()
        reader.release.set()
        thread.join(10)
    finally:
        threading.excepthook = previous
    assert not thread.is_alive() and errors == [] and tracker.pages == []


@pytest.mark.parametrize("newest", [0, 1, 2, 3, 7, 8, 9, 1000, 300_001, 2**40 + 5])
def test_the_newest_event_is_found_in_a_few_probes(newest: int) -> None:
    probes: list[int] = []

    def any_after(seq: int) -> bool:
        probes.append(seq)
        return seq < newest

    assert newest_seq(any_after) == newest
    assert len(probes) <= 2 * newest.bit_length() + 2


def test_events_arriving_during_the_probe_are_never_skipped() -> None:
    """The answer is at most the newest event when the probe ends: every later event is above it."""
    state = {"newest": 500}

    def any_after(seq: int) -> bool:
        state["newest"] += 3  # a busy engine: events keep coming while we probe
        return seq < state["newest"]

    found = newest_seq(any_after)
    assert 500 <= found <= state["newest"]
