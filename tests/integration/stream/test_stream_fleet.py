"""The local fleet: real worker processes over the engine's SQS, the stream test tool, kill -9 and scaling."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.local.fleet import Fleet
from chalicelib.local.stream import LocalStream
from tests.integration.localbatch.conftest import pid_alive
from tests.integration.stream.conftest import StreamEnv, status_of, stream_spec, wait_for


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    started: list[Fleet] = []
    yield started
    for fleet in started:
        fleet.stop()


def state(stream: LocalStream, stage: str, key: str) -> str | None:
    record = status_of(stream, stage, key)
    return record.status.value if record else None


def published(stream: LocalStream, stage: str, key: str) -> Path:
    return stream.data_dir / "runs" / stream.run_id / stage / key


def test_items_flow_on_while_one_is_held_then_its_worker_is_killed(stream_env: StreamEnv, fleets: list[Fleet]) -> None:
    stream = stream_env.open(stream_spec(stream_env.marks, max_workers=2, backlog_per_worker=1, visibility_timeout=2,
                                         max_receives=2))
    fleet = Fleet(stream, grace=2, interval=0.2, scale_in_after=30)
    fleets.append(fleet.start())
    stream.submit_file(stream_env.item_file("hold1"))
    started = wait_for(lambda: (stream_env.marks / "started-a-hold1").exists(), "hold1 to start in stage a")
    assert started
    for key in ("fast1", "fast2", "poison1"):
        stream.submit_file(stream_env.item_file(key))

    # The other items pass both stages while hold1 is still in stage a: no stage-wide barrier.
    wait_for(lambda: state(stream, "b", "fast1") == state(stream, "b", "fast2") == "SUCCEEDED", "fast items in b")
    assert state(stream, "a", "hold1") == "RUNNING"
    poisoned = wait_for(lambda: state(stream, "a", "poison1") == "DEAD_LETTERED" and status_of(stream, "a", "poison1"),
                        "the poison item in the dead-letter queue")
    assert poisoned.receives == 2 and "poisoned input poison1: cannot decode" in poisoned.reason
    assert stream.dead_letters("a") == 1 and state(stream, "b", "poison1") is None

    # kill -9 the worker running hold1: nothing is lost, it runs again elsewhere, b publishes it once.
    holder = status_of(stream, "a", "hold1").worker
    victim = next(w for w in fleet.workers()["a"] if w.worker_id == holder)
    os.kill(victim.proc.pid, signal.SIGKILL)
    tool_pid = int((stream_env.marks / "started-a-hold1").read_text())
    wait_for(lambda: not pid_alive(tool_pid), "the dead worker's tool to be killed with its group")
    wait_for(lambda: stream_env.runs("a", "hold1") == 2, "hold1 to be received again after the visibility timeout")
    stream_env.release("hold1")
    wait_for(lambda: state(stream, "b", "hold1") == "SUCCEEDED", "hold1 through b")
    assert stream_env.runs("b", "hold1") == 1
    assert (published(stream, "b", "hold1") / "_SUCCESS").exists()
    assert (published(stream, "b", "hold1") / "hold1.txt").read_text() == "content of hold1\n"
    assert fleet.stages["a"].replaced == 1
    assert stream.backlog("a").total == 0 and stream.backlog("b").total == 0


def test_fleet_grows_under_a_burst_and_shrinks_to_min_without_interrupting_a_busy_worker(
        stream_env: StreamEnv, fleets: list[Fleet]) -> None:
    stream = stream_env.open(stream_spec(stream_env.marks, stages=1, min_workers=1, max_workers=3,
                                         backlog_per_worker=1, visibility_timeout=30))
    fleet = Fleet(stream, grace=1, interval=0.2, scale_in_after=0.5)
    fleets.append(fleet.start())
    workers = fleet.stages["a"]
    wait_for(lambda: len(workers.running) == 1, "min_workers to start")
    for key in ("hold1", "hold2", "hold3"):
        stream.submit_file(stream_env.item_file(key))
    wait_for(lambda: all((stream_env.marks / f"started-a-{k}").exists() for k in ("hold1", "hold2", "hold3")),
             "three workers busy at once")
    assert len(workers.running) == 3
    stream_env.release("hold1")
    stream_env.release("hold2")
    busy = status_of(stream, "a", "hold3").worker
    wait_for(lambda: [w.worker_id for w in workers.running] == [busy], "scale-in to the one busy worker")
    assert state(stream, "a", "hold3") == "RUNNING"
    stream_env.release("hold3")
    wait_for(lambda: state(stream, "a", "hold3") == "SUCCEEDED", "hold3 to finish on its worker")
    record = status_of(stream, "a", "hold3")
    assert (record.worker, record.receives) == (busy, 1)  # never interrupted, never handed to another
    assert len(workers.running) == 1  # min_workers stays when idle
