"""`conveyor run / runs / run-status / rerun` end to end (engine in-process), and the inbox trigger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chalicelib.cli import main
from chalicelib.local.inbox_watcher import InboxWatcher
from tests.e2e.pipeline_harness import STAGE, local_runtime, make_items, wait_for_end

SPEC = f"""name: cli
stages:
  - name: a
{STAGE}    command: [python, -m, tool, copy, --key, "{{key}}", --fail-key, "@FAIL", --out, "{{out}}", "{{item}}"]
    foreach: item
  - name: c
{STAGE}    command: [python, -m, tool, gather, --out, "{{out}}", "{{a}}"]
    after: [a]
"""


def _spec(tmp_path: Path, fail: str) -> Path:
    path = tmp_path / f"spec-{fail}.yaml"
    path.write_text(SPEC.replace("@FAIL", fail))
    return path


def test_run_succeeds_with_exit_0_and_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt"])
    data = tmp_path / "data"
    code = main(["run", str(_spec(tmp_path, "none")), "--items", str(items), "--data-dir", str(data),
                 "--run-id", "ok1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SUCCEEDED" in out and f"outputs: {(data / 'runs' / 'ok1').as_uri()}" in out
    assert (data / "runs" / "ok1" / "c" / "all.txt").read_text().splitlines() == ["s0:s0.txt", "s1:s1.txt"]
    assert main(["runs", "--data-dir", str(data)]) == 0
    assert "ok1" in capsys.readouterr().out
    assert main(["run-status", "ok1", "--data-dir", str(data), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["status"] == "SUCCEEDED"
    assert [(s["stage"], s["counts"]) for s in view["stages"]] == [("a", {"SUCCEEDED": 2}), ("c", {"SUCCEEDED": 1})]


def test_failed_run_exits_1_with_item_reason_and_log_tail_then_rerun_takes_failed_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt", "s2.txt"])
    data = tmp_path / "data"
    code = main(["run", str(_spec(tmp_path, "s1")), "--items", str(items), "--data-dir", str(data),
                 "--run-id", "bad1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "stage a, item 's1' [job " in out
    assert ":1]: Essential container in task exited (exit code 3)" in out
    assert "full logs: conveyor logs --run bad1 --stage STAGE --item ITEM" in out
    assert "failing on purpose for s1" in out  # the tail of the item's log
    # Nothing tolerates a's failure: the run ends with it, as the failed wait ends it on AWS.
    assert "- run: StageFailed: stage a: 1 of 3 items failed (first: item 1: Essential container" in out
    assert main(["rerun", "bad1", "--failed", "--data-dir", str(data), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "rerun of bad1 as" in out and "stage a: 1 item(s) run again (s1), 2 reused" in out
    assert main(["runs", "--data-dir", str(data)]) == 0
    runs = capsys.readouterr().out
    assert runs.count("cli-") == 1  # the re-run got a fresh id
    assert main(["run-status", "bad1", "--data-dir", str(data)]) == 1
    status = capsys.readouterr().out
    assert "stage a, item 's1'" in status and "failing on purpose for s1" in status


def test_bad_spec_is_reported_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nstages:\n  - name: a\n    command: [true]\n    after: [nope]\n")
    assert main(["run", str(spec), "--data-dir", str(tmp_path / "d"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "$.stages[0]" in err and "Traceback" not in err


def test_inbox_starts_one_run_per_delivered_manifest(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt", "s1.txt"])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    document = yaml.safe_load(SPEC.replace("@FAIL", "none"))
    with local_runtime(tmp_path / "data") as (_, runtime):
        watcher = InboxWatcher(inbox, runtime.starter, spec=document,
                               runs_prefix=(runtime.data_dir / "runs").as_uri())
        manifest = inbox / "batch.txt"
        manifest.write_text(f"{items / 's0.txt'}\n{items / 's1.txt'}\n")
        assert watcher.poll() == []  # first sight: wait until the file holds still
        started = watcher.poll()
        assert len(started) == 1
        run = wait_for_end(runtime, started[0])
        assert run.status.value == "SUCCEEDED" and run.items == 2
        # The same content delivered again (rewritten in place) maps to the same run.
        manifest.write_text(manifest.read_text())
        watcher.poll()
        assert watcher.poll() == started
        assert [r.run_id for r in runtime.store.list_runs()] == started
        # Different content is a different delivery: a second run.
        (inbox / "other.txt").write_text(f"{items / 's0.txt'}\n")
        watcher.poll()
        second = watcher.poll()
        assert len(second) == 1 and second != started
        assert wait_for_end(runtime, second[0]).items == 1


def test_pipeline_events_are_appended_to_the_local_event_log(tmp_path: Path) -> None:
    items = make_items(tmp_path / "items", ["s0.txt"])
    data = tmp_path / "data"
    assert main(["run", str(_spec(tmp_path, "none")), "--items", str(items), "--data-dir", str(data),
                 "--run-id", "ev1", "--no-progress"]) == 0
    lines = [json.loads(line) for line in (data / "pipeline-events.jsonl").read_text().splitlines()]
    assert {e["source"] for e in lines} == {"conveyor"}
    runs = [e["detail"]["status"] for e in lines if e["detail-type"] == "Pipeline Run State Change"]
    assert runs[-1] == "SUCCEEDED" and set(runs) <= {"RUNNING", "SUCCEEDED"}
    stages = {(e["detail"]["stage"], e["detail"]["status"])
              for e in lines if e["detail-type"] == "Pipeline Stage State Change"}
    assert {("a", "SUCCEEDED"), ("c", "SUCCEEDED")} <= stages
