"""`conveyor validate` and `conveyor plan`: every issue printed, exit codes, the job table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.cli import main

SPECS = Path(__file__).parents[2] / "fixtures" / "specs"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SPECS / "valid" / "variant-calling.yaml")]) == 0
    assert capsys.readouterr().out.strip() == (
        "OK: pipeline 'variant-calling' is valid (4 stages: qc, align, joint, report)"
    )


def test_validate_prints_every_issue_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SPECS / "invalid" / "schema-many.yaml")]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "7 problems found"
    assert "$.stages[2].after[0]: unknown stage 'nope' (expected one of: a, b, c) [known-stage]" in lines
    assert lines[0].startswith("$.name: '1 bad name' does not match")
    assert "Traceback" not in "\n".join(lines)


def test_validate_bad_yaml_and_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SPECS / "invalid" / "bad-yaml.yaml")]) == 1
    assert capsys.readouterr().out.startswith("$: line ")
    assert main(["validate", "/no/such/spec.yaml"]) == 1
    assert "spec file not found" in capsys.readouterr().out


def write_items(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        for mate in (1, 2):
            (folder / f"s{i:02d}_R{mate}.fastq.gz").write_bytes(b"")
    return folder


def test_plan_prints_jobs_and_dependencies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reads = write_items(tmp_path / "reads", 5)
    code = main(["plan", str(SPECS / "valid" / "variant-calling.yaml"), "--items", str(reads),
                 "--array-limit", "2", "--dependency-limit", "2", "--run-id", "r7"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == (
        "plan for pipeline 'variant-calling': 5 item(s), run id 'r7', array limit 2, dependency limit 2"
    )
    rows = {line.split()[0]: line for line in out.splitlines()[3:] if line.strip()}
    assert "align.c0 (N_TO_N)" not in rows["qc.c0"]
    assert "qc.c0 (N_TO_N)" in rows["align.c0"]
    assert "deferred" in rows["joint"] and "after 3 job(s) end" in rows["joint"]
    assert out.strip().splitlines()[-1] == "8 job(s): 6 submitted up front, 2 deferred, 0 barrier(s)"


def test_plan_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reads = write_items(tmp_path / "reads", 3)
    assert main(["plan", str(SPECS / "valid" / "variant-calling.yaml"), "--items", str(reads), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["item_count"] == 3 and [j["key"] for j in document["jobs"]][:2] == ["qc", "align"]
    assert main(["plan", str(SPECS / "valid" / "variant-calling.yaml"), "--items", str(tmp_path / "none")]) == 1
    assert "none: no such file or folder" in capsys.readouterr().err
    assert main(["plan", str(SPECS / "invalid" / "cycle.yaml")]) == 1
    assert "stages form a cycle" in capsys.readouterr().out
