"""Hands engine events to the run tracker in pages, from a thread of its own.

The in-process engine calls its subscribers once per event, and the tracker writes each
array child's item result in its own SQLite commit: at a few events per job, a run of short
jobs spent more time in commits than the jobs ran. The relay queues the events and hands the
tracker everything queued at once (``Tracker.handle_many``: one write for the children's item
results), so the tracker's cost per event falls as the event rate rises, instead of its backlog
growing. The HTTP feed of `conveyor serve` (``runtime._follow_feed``) hands its pages the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from chalicelib.pipeline.tracker import Tracker

logger = logging.getLogger(__name__)
PAGE_LIMIT = 1000
_STOP = object()


def track_page(tracker: Tracker, events: list[dict[str, Any]]) -> None:
    """Hands a page of events to the tracker at once; when that fails, each event again on its own
    (handling one twice changes nothing), so one bad event costs only itself."""
    if not events:
        return
    try:
        tracker.handle_many(events)
        return
    except Exception:
        logger.exception("tracker failed on a page of %d events; handling them one by one", len(events))
    for envelope in events:
        try:
            tracker.handle(envelope)
        except Exception:
            logger.exception("tracker failed on an event")


class TrackerRelay:
    """An engine subscriber (``relay(envelope)``) feeding ``tracker`` pages of what has queued up."""

    def __init__(self, tracker: Tracker, *, page_limit: int = PAGE_LIMIT) -> None:
        self._tracker = tracker
        self._page_limit = page_limit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="conveyor-tracker", daemon=True)
        self._thread.start()

    def __call__(self, envelope: dict[str, Any]) -> None:
        self._queue.put(envelope)

    def close(self, timeout: float = 10.0) -> None:
        """Hands over what was queued before this call, then stops the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            page, stopping = self._next_page()
            track_page(self._tracker, page)
            if stopping:
                return

    def _next_page(self) -> tuple[list[dict[str, Any]], bool]:
        """Waits for one event, then takes whatever else is queued (up to the page limit)."""
        item = self._queue.get()
        page: list[dict[str, Any]] = []
        while item is not _STOP:
            page.append(item)
            if len(page) >= self._page_limit:
                return page, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return page, False
        return page, True
