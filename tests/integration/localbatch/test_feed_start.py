"""`conveyor run` against a served engine starts its event feed after the engine's newest event, found by probing."""

from __future__ import annotations

import time
from collections.abc import Callable

from chalicelib.local.engine_reader import HttpReader
from tests.integration.localbatch.conftest import LiveEngine, register


def _wait_ended(live: LiveEngine, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while live.batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, "the array did not end"
        time.sleep(0.1)


def test_the_newest_event_over_http_is_the_engines_last(make_engine: Callable[..., LiveEngine]) -> None:
    live = make_engine()
    reader = HttpReader(live.url)
    assert reader.newest_event() == 0  # a fresh engine has none
    job_id = live.submit("many", register(live.batch, "noop", ["true"]), arrayProperties={"size": 40})
    _wait_ended(live, job_id)
    newest = live.engine.store.last_event_seq()
    assert newest > 80  # dozens of state changes, so the probe really searched
    assert reader.newest_event() == newest
    assert reader.events(newest, 0, None)[0] == []
