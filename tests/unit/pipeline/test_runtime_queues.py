"""Local composition: compute class -> job queue (a queue named like the class when it exists, else `default`)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.local.runtime import queue_map
from chalicelib.pipeline.errors import PipelineError


class Queues:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def describe_job_queues(self, **kwargs: Any) -> dict[str, Any]:
        return {"jobQueues": [{"jobQueueName": n, "state": "ENABLED"} for n in kwargs["jobQueues"] if n in self.names]}


def test_classes_without_their_own_queue_use_default() -> None:
    assert queue_map(Queues([])) == {"spot": "default", "on-demand": "default", "gpu": "default"}


def test_a_queue_named_like_the_class_is_used() -> None:
    assert queue_map(Queues(["gpu"])) == {"spot": "default", "on-demand": "default", "gpu": "gpu"}


class Unreachable:
    def describe_job_queues(self, **kwargs: Any) -> dict[str, Any]:
        raise ConnectionRefusedError("[Errno 111] Connection refused")


def test_an_engine_that_does_not_answer_is_a_clear_error_not_default_queues() -> None:
    with pytest.raises(PipelineError, match=r"cannot list the engine's job queues \(DescribeJobQueues\): .*refused"):
        queue_map(Unreachable())
