"""Pipeline event envelopes: EventBridge shape, source `conveyor`, counts per status."""

from __future__ import annotations

from chalicelib.pipeline import events
from chalicelib.pipeline.records import RunRecord, RunStatus, StageRecord, StageStatus

RUN = RunRecord(run_id="r1", pipeline="p", status=RunStatus.RUNNING, created_at=1_700_000_000_000,
                prefix="s3://b/runs/r1", items=3)
STAGES = [
    StageRecord("r1", "a", StageStatus.FAILED, 3, {"SUCCEEDED": 2, "FAILED": 1}, 1, 2),
    StageRecord("r1", "b", StageStatus.RUNNING, 3, {"RUNNING": 2}),
]


def test_envelopes_have_the_eventbridge_shape() -> None:
    envelope = events.stage_event(RUN, STAGES[0], now_ms=1_700_000_000_000)
    assert set(envelope) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert envelope["source"] == "conveyor"
    assert envelope["detail-type"] == "Pipeline Stage State Change"
    assert envelope["time"] == "2023-11-14T22:13:20Z"
    assert envelope["resources"] == ["arn:conveyor:us-east-1:000000000000:run/r1"]
    assert envelope["detail"] == {
        "runId": "r1", "pipeline": "p", "stage": "a", "status": "FAILED", "items": 3,
        "counts": {"SUCCEEDED": 2, "FAILED": 1}, "startedAt": 1, "endedAt": 2, "deferred": False,
    }
    assert envelope["id"] != events.stage_event(RUN, STAGES[0], now_ms=0)["id"]


def test_run_event_totals_counts_over_stages() -> None:
    envelope = events.run_event(RUN, STAGES, now_ms=0)
    assert envelope["detail-type"] == "Pipeline Run State Change"
    detail = envelope["detail"]
    assert detail["status"] == "RUNNING"
    assert detail["counts"] == {"SUCCEEDED": 2, "FAILED": 1, "RUNNING": 2}
    assert detail["stages"] == {"a": {"status": "FAILED", "counts": {"SUCCEEDED": 2, "FAILED": 1}},
                                "b": {"status": "RUNNING", "counts": {"RUNNING": 2}}}


def test_only_batch_job_state_changes_are_batch_events() -> None:
    assert events.is_batch_job_event({"detail-type": "Batch Job State Change", "source": "aws.batch", "detail": {}})
    assert not events.is_batch_job_event({"detail-type": "Batch Job State Change", "source": "conveyor", "detail": {}})
    assert not events.is_batch_job_event(events.run_event(RUN, STAGES, now_ms=0))


def test_memory_publisher_keeps_order_and_calls_subscribers_until_unsubscribed() -> None:
    publisher = events.MemoryPublisher()
    seen: list[str] = []
    unsubscribe = publisher.subscribe(lambda e: seen.append(e["detail"]["runId"]))
    publisher.publish([events.run_event(RUN, [], now_ms=0)])
    unsubscribe()
    publisher.publish([events.stage_event(RUN, STAGES[1], now_ms=0)])
    assert seen == ["r1"]
    assert [e["detail-type"] for e in publisher.envelopes] == ["Pipeline Run State Change", "Pipeline Stage State Change"]
    assert len(publisher.of_type("Pipeline Stage State Change")) == 1
