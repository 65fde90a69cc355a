"""Batch Job State Change events: one per state change, detail == DescribeJobs, over HTTP and in-process."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import wait_for_status, wait_until
from tests.integration.localbatch.conftest import LiveEngine, register


def http_events(url: str, after: int = 0, wait: float = 0.0, job_id: str | None = None) -> dict[str, Any]:
    query = f"/events?after={after}&wait={wait}" + (f"&jobId={job_id}" if job_id else "")
    with urllib.request.urlopen(url + query, timeout=wait + 10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_every_state_change_has_an_event_and_none_for_submitted(live: LiveEngine, tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_event(envelope: dict[str, Any]) -> None:
        with lock:
            received.append(envelope)
    unsubscribe = live.engine.subscribe(on_event)
    try:
        jd = register(live.batch, "quick", ["true"])
        gate = tmp_path / "gate"
        gated = register(live.batch, "gated", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"])
        first = live.submit("first", gated)
        second = live.submit("second", jd, dependsOn=[{"jobId": first}])
        wait_for_status(live.batch, second, "PENDING")
        gate.touch()  # only now may the first job finish
        final = wait_for_status(live.batch, second, "SUCCEEDED")
        wait_until(lambda: any(e["detail"].get("jobId") == second and e["detail"]["status"] == "SUCCEEDED"
                               for e in list(received)), what="the in-process SUCCEEDED event")
    finally:
        unsubscribe()
    feed = http_events(live.url)
    changes = [e for e in feed["events"] if e["detail-type"] == "Batch Job State Change"]
    statuses = [e["detail"]["status"] for e in changes if e["detail"]["jobId"] == second]
    assert statuses == ["PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert [e["detail"]["status"] for e in changes if e["detail"]["jobId"] == first] == \
        ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    for envelope in changes:
        assert envelope["source"] == "aws.batch"
        assert envelope["version"] == "0" and envelope["region"] == "us-east-1"
        assert envelope["resources"] == [envelope["detail"]["jobArn"]]
        assert envelope["detail"]["status"] != "SUBMITTED"
    assert changes[-1]["detail"] == final  # the detail is exactly the DescribeJobs job
    # In-process subscribers see the same envelopes (same ids, same details) in commit order.
    with lock:
        mine = [e for e in received if e["detail-type"] == "Batch Job State Change"]
    assert [e["id"] for e in mine] == [e["id"] for e in changes]
    assert mine == changes
    assert len({e["id"] for e in changes}) == len(changes)


def test_http_feed_waits_for_new_events_and_filters_by_job(live: LiveEngine) -> None:
    jd = register(live.batch, "quick", ["true"])
    start = http_events(live.url)["next"]
    result: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: result.update(http_events(live.url, after=start, wait=15)))
    reader.start()
    job = live.submit("waited", jd)
    reader.join(timeout=20)
    assert result["events"], "a waiting reader got no events"
    assert result["events"][0]["detail"]["jobId"] == job
    assert result["next"] > start
    wait_for_status(live.batch, job, "SUCCEEDED")
    other = live.submit("other", jd)
    wait_for_status(live.batch, other, "SUCCEEDED")
    only = http_events(live.url, job_id=job)["events"]
    assert {e["detail"]["jobId"] for e in only} == {job}
    assert only[-1]["detail"]["status"] == "SUCCEEDED"
    empty = http_events(live.url, after=http_events(live.url)["next"], wait=0.2)
    assert empty["events"] == []


def test_array_children_emit_their_own_events(live: LiveEngine) -> None:
    jd = register(live.batch, "quick", ["true"])
    parent = live.submit("arr", jd, arrayProperties={"size": 2})
    wait_for_status(live.batch, parent, "SUCCEEDED")
    events, _ = live.engine.read_events(0, 10_000)
    by_job: dict[str, list[str]] = {}
    for envelope in events:
        by_job.setdefault(envelope["detail"]["jobId"], []).append(envelope["detail"]["status"])
    assert by_job[parent][0] == "PENDING" and by_job[parent][-1] == "SUCCEEDED"
    for index in range(2):
        assert by_job[f"{parent}:{index}"][-1] == "SUCCEEDED"
        assert "SUBMITTED" not in by_job[f"{parent}:{index}"]
