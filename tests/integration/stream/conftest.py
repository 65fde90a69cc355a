"""Stream fixtures: an engine served on loopback, a stream spec over the stream test tool, marks to count runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chalicelib.local.stream import LocalStream
from tests.integration.localbatch.conftest import LiveEngine, start_live, stop_live

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / "tests" / "fixtures" / "stream_tools"


def stream_spec(marks: Path, *, stages: int = 2, **settings: int) -> str:
    """A stream spec: stage a (per item), then b after a when ``stages`` is 2."""
    stream = {"min_workers": 0, "max_workers": 2, "visibility_timeout": 3, "max_receives": 2, **settings}
    text = ("name: flow\nmode: stream\ndefaults:\n"
            f"  build: {TOOLS}\n  stream: {{{', '.join(f'{k}: {v}' for k, v in stream.items())}}}\nstages:\n"
            "  - name: a\n    foreach: item\n"
            f"    command: [python, -m, stream_tool, a, '{{key}}', '{{out}}', '{marks}', '{{item}}']\n")
    if stages == 2:
        text += ("  - name: b\n    foreach: item\n    after: [a]\n"
                 f"    command: [python, -m, stream_tool, b, '{{key}}', '{{out}}', '{marks}', '{{a}}']\n")
    return text


@dataclass
class StreamEnv:
    live: LiveEngine
    root: Path
    marks: Path

    def open(self, spec_text: str) -> LocalStream:
        spec = self.root / "stream.yaml"
        spec.write_text(spec_text)
        return LocalStream.open(str(spec), self.live.url, self.live.data_dir)

    def item_file(self, key: str) -> Path:
        path = self.root / "files" / f"{key}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"content of {key}\n")
        return path

    def runs(self, stage: str, key: str) -> int:
        path = self.marks / f"runs-{stage}-{key}"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def release(self, key: str) -> None:
        (self.marks / f"release-{key}").write_text("go")


@pytest.fixture
def stream_env(tmp_path: Path) -> Iterator[StreamEnv]:
    live = start_live(tmp_path / "engine")
    marks = tmp_path / "marks"
    marks.mkdir()
    yield StreamEnv(live, tmp_path, marks)
    stop_live(live)


def status_of(stream: LocalStream, stage: str, key: str) -> Any:
    for record in stream.items.list_items(stream.run_id, stage):
        if record.key == key:
            return record
    return None


def wait_for(predicate: Callable[[], Any], what: str, deadline: float = 40.0) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
