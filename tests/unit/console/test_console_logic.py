"""The console's pure parts: the start input check, the spec list, and reading the pipeline event log."""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.console.actions import _input_problems, list_specs
from chalicelib.console.views import _pipeline_events


def test_every_input_problem_is_reported_at_its_path() -> None:
    problems = _input_problems({"items": 5, "runId": "has space", "colour": "red", "extra": None})
    paths = sorted(p.path for p in problems)
    assert paths == ["$.colour", "$.extra", "$.items", "$.runId"]
    assert _input_problems({"items": "/data", "runId": "ok-1_A"}) == []
    assert _input_problems({}) == []
    assert [p.path for p in _input_problems(["items"])] == ["$"]


def test_specs_are_the_yaml_and_json_files_of_the_folder_with_their_pipeline_names(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("name: beta\nstages: []\n")
    (tmp_path / "a.json").write_text(json.dumps({"name": "alpha", "stages": []}))
    (tmp_path / "notes.txt").write_text("not a spec")
    (tmp_path / "bad.yml").write_text("name: [unclosed\n")
    (tmp_path / "dir.yaml").mkdir()
    rows = list_specs(tmp_path)
    assert [r["file"] for r in rows] == ["a.json", "b.yaml", "bad.yml"]
    assert rows[0]["pipeline"] == "alpha" and rows[1]["pipeline"] == "beta"
    assert rows[2]["pipeline"].startswith("(unreadable")
    assert list_specs(None) == [] and list_specs(tmp_path / "missing") == []


def test_pipeline_events_are_read_from_an_offset_and_a_half_written_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "pipeline-events.jsonl"
    first = {"time": "t1", "detail-type": "Pipeline Run State Change", "detail": {"runId": "r1", "status": "RUNNING"}}
    log.write_text(json.dumps(first) + "\n" + '{"time": "t2", "detail-ty')
    rows, offset = _pipeline_events(log, 0)
    assert rows == [{"time": "t1", "type": "Pipeline Run State Change", "runId": "r1", "stage": "",
                     "status": "RUNNING"}]
    assert offset == len(json.dumps(first)) + 1
    with log.open("a") as handle:
        handle.write('pe": "Pipeline Stage State Change", "detail": {"runId": "r1", "stage": "qc"}}\n')
    rows, offset2 = _pipeline_events(log, offset)
    assert [r["stage"] for r in rows] == ["qc"] and offset2 == log.stat().st_size
    assert _pipeline_events(tmp_path / "none.jsonl", 7) == ([], 7)
