"""Events of jobs not recorded yet: furthest status per job and child, trimmed, bounded in count and age."""

from __future__ import annotations

from typing import Any

from chalicelib.pipeline.orphan_events import OrphanEvents, trimmed


def _detail(job_id: str, status: str, index: int | None = None, **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"jobId": job_id, "status": status, "container": {"command": ["x"] * 50}, **extra}
    if index is not None:
        detail["jobId"] = f"{job_id}:{index}"
        detail["arrayProperties"] = {"index": index, "size": 10}
    return detail


def test_the_furthest_status_of_each_child_is_kept_and_taken_as_envelopes() -> None:
    kept = OrphanEvents()
    kept.keep("p", 0, _detail("p", "RUNNING", 0), now_ms=0)
    kept.keep("p", 0, _detail("p", "RUNNABLE", 0), now_ms=1)  # a retry's step back: the further one stays
    kept.keep("p", 1, _detail("p", "RUNNING", 1), now_ms=1)
    kept.keep("p", 1, _detail("p", "SUCCEEDED", 1), now_ms=2)
    kept.keep("p", None, _detail("p", "PENDING"), now_ms=2)
    assert len(kept) == 3 and kept.job_ids() == ["p"]
    taken = kept.take("p")
    assert [(e["detail"]["jobId"], e["detail"]["status"]) for e in taken] == [
        ("p:0", "RUNNING"), ("p:1", "SUCCEEDED"), ("p", "PENDING")]
    assert all(e["detail-type"] == "Batch Job State Change" and e["source"] == "aws.batch" for e in taken)
    assert len(kept) == 0 and kept.take("p") == []


def test_kept_events_hold_only_what_the_tracker_reads() -> None:
    detail = _detail("p", "FAILED", 3, statusReason="Essential container in task exited", stoppedAt=9,
                     jobDefinition="big")
    detail["container"]["exitCode"] = 2
    assert trimmed(detail) == {"jobId": "p:3", "status": "FAILED", "statusReason": "Essential container in task exited",
                               "stoppedAt": 9, "arrayProperties": {"index": 3}, "container": {"exitCode": 2}}


def test_the_oldest_jobs_go_first_past_the_limit() -> None:
    kept = OrphanEvents(limit=3)
    kept.keep("old", 0, _detail("old", "RUNNING", 0), now_ms=0)
    kept.keep("old", 1, _detail("old", "RUNNING", 1), now_ms=0)
    kept.keep("mid", None, _detail("mid", "RUNNING"), now_ms=1)
    kept.keep("new", None, _detail("new", "RUNNING"), now_ms=2)
    assert kept.job_ids() == ["mid", "new"] and len(kept) == 2


def test_jobs_never_recorded_age_out() -> None:
    kept = OrphanEvents(ttl_ms=100)
    kept.keep("foreign", None, _detail("foreign", "RUNNING"), now_ms=0)
    kept.keep("foreign", None, _detail("foreign", "SUCCEEDED"), now_ms=50)
    kept.keep("ours", None, _detail("ours", "RUNNING"), now_ms=100)  # "foreign" was first kept 100 ms ago
    assert kept.job_ids() == ["ours"] and len(kept) == 1


def test_the_oldest_jobs_go_first_past_the_job_limit() -> None:
    kept = OrphanEvents(job_limit=2)
    for n, job in enumerate(("a", "b", "c")):
        kept.keep(job, None, _detail(job, "RUNNING"), now_ms=n)
    kept.keep("b", 0, _detail("b", "RUNNING", 0), now_ms=3)  # a kept job's child adds no job
    assert kept.job_ids() == ["b", "c"] and len(kept) == 3
