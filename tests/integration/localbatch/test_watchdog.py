"""The watchdog: a dead scheduler thread shows on /health and in the log, the API stops taking work,
and `conveyor serve` exits non-zero instead of answering while dead."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib.localbatch.engine import Engine
from tests.helpers import http_request, wait_until
from tests.integration.localbatch.conftest import LiveEngine


def _broken_tick(*args: Any, **kwargs: Any) -> None:
    raise OverflowError("integer division result too large for a float")


def test_a_dead_scheduler_is_reported_and_refuses_work(make_engine: Callable[..., LiveEngine],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    live = make_engine()
    status, _, body = http_request(live.url + "/health", method="GET")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    with caplog.at_level(logging.ERROR):
        monkeypatch.setattr(live.engine.scheduler, "tick", _broken_tick)
        live.engine._wake.set()
        wait_until(live.engine.failed.is_set, deadline=30, what="the watchdog to declare the engine failed")
    assert "OverflowError" in (live.engine.failure or "")
    assert any(r.levelno == logging.CRITICAL and "engine failed" in r.getMessage() for r in caplog.records)
    status, _, body = http_request(live.url + "/health", method="GET")
    assert status == 503 and json.loads(body)["status"] == "failed"
    status, _, body = http_request(live.url + "/v1/submitjob", b"{}")
    assert status == 503 and "stopped scheduling" in json.loads(body)["message"]


def test_a_thread_that_dies_outright_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def die(self: Engine) -> None:
        raise SystemExit("gone")
    monkeypatch.setattr(Engine, "_dispatch_loop", die)
    engine = Engine(tmp_path / "e").start()
    try:
        wait_until(engine.failed.is_set, deadline=10, what="the watchdog")
        assert "events thread died" in (engine.failure or "")
    finally:
        engine.stop()


def test_serve_exits_non_zero_when_the_scheduler_dies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli import main

    monkeypatch.setattr(Engine, "_loop_once", lambda self: _broken_tick())
    code = main(["serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--vcpus", "1", "--memory", "512",
                 "--gpus", "0"])
    assert code == 70
    assert "the engine failed" in capsys.readouterr().err
