"""The in-process engine's events reach the tracker in pages, from the relay's own thread, in order."""

from __future__ import annotations

import threading
from typing import Any

from chalicelib.local.tracker_relay import TrackerRelay


class GatedTracker:
    """Holds its first page until ``gate`` opens, so the events behind it queue up."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.first = threading.Event()
        self.pages: list[list[str]] = []
        self.threads: set[str] = set()

    def handle_many(self, events: list[dict[str, Any]]) -> None:
        self.threads.add(threading.current_thread().name)
        self.first.set()
        self.gate.wait(10)
        self.pages.append([e["id"] for e in events])


def test_events_queued_behind_a_busy_tracker_go_over_as_one_page() -> None:
    tracker = GatedTracker()
    relay = TrackerRelay(tracker)  # type: ignore[arg-type]
    relay({"id": "e0"})
    assert tracker.first.wait(10)
    for n in range(1, 6):
        relay({"id": f"e{n}"})  # the engine's dispatch thread is never held up by the tracker
    tracker.gate.set()
    relay.close()
    assert tracker.pages == [["e0"], ["e1", "e2", "e3", "e4", "e5"]]
    assert tracker.threads == {"conveyor-tracker"}


def test_pages_are_bounded_and_close_hands_over_what_was_queued() -> None:
    tracker = GatedTracker()
    relay = TrackerRelay(tracker, page_limit=2)  # type: ignore[arg-type]
    relay({"id": "e0"})
    assert tracker.first.wait(10)
    for n in range(1, 6):
        relay({"id": f"e{n}"})
    tracker.gate.set()
    relay.close()
    assert tracker.pages == [["e0"], ["e1", "e2"], ["e3", "e4"], ["e5"]]
