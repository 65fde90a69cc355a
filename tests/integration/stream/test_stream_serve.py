"""`conveyor serve --inbox DIR --spec STREAM`: files landing in DIR flow through the stream's fleet."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.localbatch.conftest import run_cli, start_serve, stop_serve
from tests.integration.stream.conftest import stream_spec, wait_for


def succeeded(data: Path) -> set[tuple[str, str]]:
    """(stage, item) of every `Pipeline Item State Change` to SUCCEEDED in the local event log."""
    log = data / "pipeline-events.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {(e["detail"]["stage"], e["detail"]["item"]) for e in events
            if e["detail-type"] == "Pipeline Item State Change" and e["detail"]["status"] == "SUCCEEDED"}


def test_serve_inbox_processes_files_as_they_land(tmp_path: Path) -> None:
    marks, inbox, data = tmp_path / "marks", tmp_path / "inbox", tmp_path / "data"
    marks.mkdir()
    inbox.mkdir()
    spec = tmp_path / "stream.yaml"
    spec.write_text(stream_spec(marks, min_workers=1))
    served = start_serve(data, "--inbox", str(inbox), "--spec", str(spec))
    try:
        for key in ("one", "two"):
            (inbox / f".{key}.tmp").write_text(f"{key}\n")
            (inbox / f".{key}.tmp").rename(inbox / f"{key}.txt")
        expected = {("a", "one"), ("a", "two"), ("b", "one"), ("b", "two")}
        wait_for(lambda: succeeded(data) == expected, "both files through stages a and b", 60)
        assert not list(inbox.iterdir())  # taken from the inbox once queued
        for key in ("one", "two"):
            assert (data / "runs" / "flow-stream" / "b" / key / f"{key}.txt").read_text() == f"{key}\n"
    finally:
        stop_serve(served)
    assert served.proc.returncode == 0
    status = run_cli("run-status", "flow-stream", "--data-dir", str(data), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["items"]["counts"] == {"a": {"SUCCEEDED": 2}, "b": {"SUCCEEDED": 2}}
