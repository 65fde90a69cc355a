"""A job's state is encoded once per change: the event snapshot and the stored row share it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.localbatch import wire
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.model import Job, JobStatus
from tests.unit.localbatch.test_scheduler import FakeExecutor, Rig, make_rig
from tests.unit.localbatch.test_wire import submission

TEXT = "déjà vu ✓ 日本語 \"quoted\" \\ tab\t"

# The snapshot fields events carried before the row and the event shared one encoding.
LEGACY_SNAPSHOT_FIELDS = ("status_reason", "created_at", "started_at", "stopped_at", "attempts", "exit_code",
                          "container_reason", "log_stream", "is_cancelled", "is_terminated")


def finished_child() -> Job:
    sub = submission(array_size=2)
    parent = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.PENDING, created_at=sub.created_at)
    return Job(job_id=f"{sub.job_id}:1", sub=sub, index=1, status=JobStatus.FAILED, created_at=sub.created_at,
               parent=parent, status_reason=TEXT, exit_code=3, container_reason=TEXT, started_at=sub.created_at + 1,
               stopped_at=sub.created_at + 9, log_stream="jd/default/abc", instance_id="i-0123", placed_ce="local",
               attempts=[{"container": {"exitCode": 3, "reason": TEXT}, "statusReason": TEXT}])


def test_state_round_trips_every_field_and_keeps_text_exact() -> None:
    job = finished_child()
    text = wire.state_json(job)
    assert "déjà vu ✓ 日本語" in text  # UTF-8 kept as is, not \u-escaped
    state = json.loads(text)
    assert list(state) == list(wire.STATE_FIELDS)
    assert state["status"] == "FAILED"
    for name in wire.STATE_FIELDS[:-1]:
        assert state[name] == getattr(job, name), name
    assert wire.snapshot_json(job) == "S" + text


def test_parent_state_carries_its_summary() -> None:
    sub = submission(array_size=3)
    parent = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.PENDING, created_at=1,
                 summary={s.value: 0 for s in JobStatus}, summary_at=5)
    state = json.loads(wire.state_json(parent))
    assert state["summary"] == parent.summary and state["summary_at"] == 5
    assert "summary" not in json.loads(wire.state_json(finished_child()))


def test_event_renders_byte_for_byte_as_from_the_legacy_snapshot() -> None:
    job = finished_child()
    legacy = {name: getattr(job, name) for name in LEGACY_SNAPSHOT_FIELDS}
    legacy["status"] = job.status.value
    legacy_body = "S" + json.dumps(legacy, separators=(",", ":"))
    token, sub = "cd" * 16, job.sub
    rendered = wire.render_event(token, 7, job.job_id, sub.created_at + 9, wire.snapshot_json(job), sub)
    assert rendered == wire.render_event(token, 7, job.job_id, sub.created_at + 9, legacy_body, sub)
    assert '"detail":' + wire.detail_json(job) + "}" in rendered
    assert json.loads(rendered)["detail"]["statusReason"] == TEXT


# -- through the scheduler: rows written from the shared encoding equal a fresh one ------------------

@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path / "engine")
    rig.register()
    rig.register("huge", vcpus="64")
    yield rig
    rig.engine.stop()


def stored_states(engine: Engine) -> dict[str, str]:
    with sqlite3.connect(engine.store.path) as db:
        return dict(db.execute("SELECT job_id, state FROM jobs"))


def assert_rows_current(rig: Rig) -> None:
    """Every job's row holds exactly its current state.

    An array parent's summary follows its children without the parent being written (it is
    rebuilt from them on load), so only the rest of a parent's state is compared.
    """
    rows = stored_states(rig.engine)
    for job_id, job in rig.engine.scheduler.jobs.items():
        assert job.encoded_state == "", job_id  # nothing kept in memory past a commit
        if job.summary is None:
            assert rows[job_id] == wire.state_json(job), job_id
        else:
            stored = json.loads(rows[job_id])
            current = json.loads(wire.state_json(job))
            for moves_with_children in ("summary", "summary_at"):
                stored.pop(moves_with_children), current.pop(moves_with_children)
            assert stored == current, job_id


def drive(rig: Rig) -> list[str]:
    """Runs successes, a retry, a dependency, a cancel (a change without a status change),
    a blocked queue head (another one), an array and a terminate, checking rows after each commit."""
    batch = rig.batch
    plain = rig.submit("plain")
    retried = rig.submit("retried", retryStrategy={"attempts": 2})
    first = rig.submit("first")
    waits = rig.submit("waits", dependsOn=[{"jobId": first}])
    cancelled = rig.submit("cancelled", dependsOn=[{"jobId": first}])
    array = rig.submit("arr", arrayProperties={"size": 3})
    rig.tick()
    assert_rows_current(rig)
    batch.cancel_job(jobId=cancelled, reason=TEXT)
    assert_rows_current(rig)
    rig.ex.finish(rig.key(plain), 0)
    rig.ex.finish(rig.key(retried), 1)
    rig.tick(1)
    assert_rows_current(rig)
    for key in list(rig.ex.live):
        rig.ex.finish(key, 0)
    rig.tick()
    assert_rows_current(rig)
    for _ in range(4):
        for key in list(rig.ex.live):
            rig.ex.finish(key, 0)
        rig.tick()
        assert_rows_current(rig)
    huge = rig.submit("huge", jd="huge")
    rig.tick()
    assert rig.job(huge)["statusReason"].startswith("MISCONFIGURATION:")
    assert_rows_current(rig)
    batch.terminate_job(jobId=huge, reason=TEXT)
    rig.tick()
    assert_rows_current(rig)
    ids = [plain, retried, first, waits, cancelled, array, f"{array}:0", f"{array}:2", huge]
    statuses = {job_id: rig.status(job_id) for job_id in ids}
    assert set(statuses.values()) == {"SUCCEEDED", "FAILED"}, statuses
    assert statuses[cancelled] == "FAILED" and statuses[retried] == "SUCCEEDED"
    return ids


def test_rows_match_a_fresh_encoding_after_every_commit(rig: Rig) -> None:
    drive(rig)


def test_events_carry_the_state_of_their_change(rig: Rig) -> None:
    ids = drive(rig)
    with sqlite3.connect(rig.engine.store.path) as db:
        bodies = [body for (body,) in db.execute("SELECT body FROM events WHERE job_id=? ORDER BY seq", (ids[1],))]
    states = [json.loads(body[1:]) for body in bodies]
    assert [s["status"] for s in states] == ["RUNNABLE", "STARTING", "RUNNING", "RUNNABLE", "STARTING", "RUNNING",
                                             "SUCCEEDED"]
    assert [len(s["attempts"]) for s in states] == [0, 0, 0, 1, 1, 1, 2]
    assert json.loads(stored_states(rig.engine)[ids[1]]) == states[-1]


def test_reloaded_engine_describes_jobs_as_before(rig: Rig, tmp_path: Path) -> None:
    ids = drive(rig)
    before = rig.batch.describe_jobs(jobs=ids)["jobs"]
    events_before = rig.events()
    rig.engine.stop()
    again = Engine(tmp_path / "engine", executor=FakeExecutor(), clock=rig.clock)
    try:
        after: list[dict[str, Any]] = again.client().describe_jobs(jobs=ids)["jobs"]
        for old, new in zip(before, after):
            if "statusSummary" in old.get("arrayProperties", {}):  # rebuilt from the children on load
                old["arrayProperties"].pop("statusSummaryLastUpdatedAt")
                new["arrayProperties"].pop("statusSummaryLastUpdatedAt")
            assert new == old
        assert again.read_events(0, 100000)[0] == events_before
    finally:
        again.stop()
