"""Stream core: the scaling decision, the poison rule, messages, spec rules and settings, item store ordering."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chalicelib.local.item_store import SqliteItemStore
from chalicelib.pipeline.errors import SpecValidationError
from chalicelib.pipeline.model import Item
from chalicelib.pipeline.spec import load_spec
from chalicelib.pipeline.stream.messages import BadMessage, StreamMessage
from chalicelib.pipeline.stream.poison import Verdict, on_failure
from chalicelib.pipeline.stream.records import ItemRecord, ItemStatus
from chalicelib.pipeline.stream.scaling import Backlog, desired_workers
from chalicelib.pipeline.stream.settings import StreamSettings, load_stream_spec, queue_name
from chalicelib.runner.stream_item import run_stream_item

SETTINGS = StreamSettings(min_workers=0, max_workers=5, backlog_per_worker=10)


@pytest.mark.parametrize(("visible", "in_flight", "current", "expected"), [
    (0, 0, 3, 0),      # idle: down to min
    (1, 0, 0, 1),      # 0 -> 1: any backlog starts a worker
    (10, 0, 0, 1),
    (11, 0, 1, 2),     # ceil(11 / 10)
    (5, 6, 1, 2),      # in-flight messages count as backlog
    (500, 0, 2, 5),    # capped at max
])
def test_desired_workers(visible: int, in_flight: int, current: int, expected: int) -> None:
    assert desired_workers(Backlog(visible, in_flight), current, SETTINGS) == expected


def test_desired_workers_keeps_min_when_idle() -> None:
    settings = StreamSettings(min_workers=2, max_workers=4, backlog_per_worker=1)
    assert desired_workers(Backlog(0, 0), 4, settings) == 2
    assert desired_workers(Backlog(3, 0), 2, settings) == 3


def test_poison_rule_retries_with_backoff_then_dead_letters_with_the_reason() -> None:
    first = on_failure(1, 3, "tool exited 3")
    assert (first.verdict, first.retry_after) == (Verdict.RETRY, 1)
    assert on_failure(2, 3, "tool exited 3").retry_after == 2
    last = on_failure(3, 3, "tool exited 3")
    assert last.verdict is Verdict.DEAD_LETTER and "tool exited 3" in last.reason
    assert on_failure(1, 3, "unreadable", readable=False).verdict is Verdict.DEAD_LETTER


def test_message_round_trip_and_bad_bodies() -> None:
    message = StreamMessage("r", "p", "a", Item("k", ("file:///x",)), "file:///runs/r", 123)
    assert StreamMessage.from_body(message.to_body()) == message
    assert StreamMessage.from_body(message.for_stage("b").to_body()).stage == "b"
    for body in ("not json", "[]", '{"v": 2}', '{"v": 1, "runId": "r"}'):
        with pytest.raises(BadMessage):
            StreamMessage.from_body(body)


def test_queue_names_fit_sqs() -> None:
    long = queue_name("p" * 64, "s" * 48, "-dlq")
    assert len(long) <= 80 and long.endswith("-dlq")
    assert long != queue_name("p" * 64, "s" * 47 + "t", "-dlq")
    assert queue_name("thumbs", "resize") == "conveyor-thumbs-resize"


STREAM = """
name: s
mode: stream
defaults: {image: busybox, stream: {max_workers: 3, visibility_timeout: 20}}
stages:
  - {name: a, foreach: item, command: [x, "{item}", "{out}"], stream: {max_receives: 5}}
  - {name: b, foreach: item, after: [a], command: [x, "{a}", "{out}"]}
"""


def test_stream_spec_settings_and_topology() -> None:
    spec = load_stream_spec(STREAM)
    assert spec.settings["a"] == StreamSettings(max_workers=3, visibility_timeout=20, max_receives=5)
    assert spec.settings["b"].max_receives == 3
    assert spec.entry_stages == ("a",) and spec.downstream("a") == ("b",) and spec.downstream("b") == ()


@pytest.mark.parametrize(("change", "path", "words"), [
    ("  - {name: j, after: [b], command: [x, '{b}', '{out}']}\n", "stages[2].foreach", "joins have no meaning"),
    ("  - {name: c, foreach: item, after: [a, b], command: [x, '{out}']}\n", "stages[2].after", "one upstream"),
    ("  - {name: c, foreach: item, sequential: true, command: [x, '{out}']}\n", "stages[2].sequential", "order"),
    ("  - {name: c, foreach: item, command: [x, '{out}'], stream: {min_workers: 4, max_workers: 2}}\n",
     "stages[2].stream.min_workers", "more than max_workers"),
])
def test_stream_rules_refuse_what_a_stream_cannot_do(change: str, path: str, words: str) -> None:
    with pytest.raises(SpecValidationError) as raised:
        load_spec(STREAM + change)
    assert any(issue.path == path and words in issue.message for issue in raised.value.issues)


def test_stream_settings_need_stream_mode() -> None:
    with pytest.raises(SpecValidationError) as raised:
        load_spec(STREAM.replace("mode: stream\n", ""))
    assert {issue.path for issue in raised.value.issues} >= {"defaults.stream", "stages[0].stream"}


def test_item_store_never_moves_back(tmp_path: Path) -> None:
    store = SqliteItemStore(tmp_path / "runs.sqlite3")
    def put(status: ItemStatus, receives: int) -> bool:
        return store.put_item(ItemRecord("r", "a", "k", status, receives, arrived_at=1, updated_at=2))
    assert put(ItemStatus.RUNNING, 1)
    assert not put(ItemStatus.QUEUED, 0)  # the upstream's late QUEUED loses to the receive
    assert put(ItemStatus.RETRYING, 1) and put(ItemStatus.RUNNING, 2)
    assert not put(ItemStatus.RUNNING, 1)  # an older receive
    assert put(ItemStatus.SUCCEEDED, 2)
    assert not put(ItemStatus.RUNNING, 3)  # finished stays finished
    assert store.count_items("r") == {"a": {"SUCCEEDED": 1}}


def test_an_item_delivered_twice_publishes_once(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("x")
    prefix = (tmp_path / "run").as_uri()
    counter = tmp_path / "count"
    tool = ["sh", "-c", f"echo run >> {counter}; cp \"$0\" \"$1\"/", "{item}", "{out}"]
    item = Item("k", (source.as_uri(),))
    first = run_stream_item(prefix, "a", item, tool, cancel=threading.Event(), scratch_parent=tmp_path / "s")
    second = run_stream_item(prefix, "a", item, tool, cancel=threading.Event(), scratch_parent=tmp_path / "s")
    assert (first.code, first.skipped, second.code, second.skipped) == (0, False, 0, True)
    assert counter.read_text().count("run") == 1
    assert sorted(p.name for p in (tmp_path / "run" / "a" / "k").iterdir()) == ["_SUCCESS", "in.txt"]
